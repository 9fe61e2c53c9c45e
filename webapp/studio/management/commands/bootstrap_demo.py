"""Create the first account and a demo team/project with the preset dimensions (idempotent)."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from webapp.accounts.models import Membership, Team
from webapp.accounts.roles import Role
from webapp.studio.models import Project
from webapp.studio.presets import preset_list
from webapp.studio.services import dimension_create_from_preset, model_embedded_ensure, project_create

USERNAME = "demo"
TEAM_NAME = "Demo team"
PROJECT_NAME = "Demo project"


class Command(BaseCommand):
    help = "Create the demo account, team, project, preset dimensions and embedded model; print the login."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reset-password", action="store_true", help="Set a new password for an existing demo user.")
        parser.add_argument("--url", default=os.environ.get("ICON2_URL", "http://127.0.0.1:8000/"), help="Login URL to print.")

    @transaction.atomic
    def handle(self, *args, reset_password: bool = False, url: str = "", **options) -> None:
        User = get_user_model()
        password = os.environ.get("ICON2_DEMO_PASSWORD") or secrets.token_urlsafe(12)
        user = User.objects.filter(username=USERNAME).first()
        if user is None:
            user = User.objects.create_user(username=USERNAME, password=password)
            password_note = password
        elif reset_password:
            user.set_password(password)
            user.save(update_fields=["password"])
            password_note = password
        else:
            password_note = None

        team = Team.objects.filter(memberships__user=user, name=TEAM_NAME).first()
        if team is None:
            team = Team.objects.create(name=TEAM_NAME)
        Membership.objects.update_or_create(team=team, user=user, defaults={"role": Role.OWNER})

        model_embedded_ensure()
        project = Project.objects.filter(team=team, name__iexact=PROJECT_NAME).first()
        if project is None:
            project = project_create(
                team=team,
                name=PROJECT_NAME,
                description="A first project with the paper's criteria and an optimism example.",
                created_by=user,
            )
        have = {key.lower() for key in project.dimensions.values_list("preset_key", flat=True)}
        have |= {name.lower() for name in project.dimensions.values_list("name", flat=True)}
        added = 0
        for preset in preset_list():
            if preset.key.lower() not in have and preset.name.lower() not in have:
                dimension_create_from_preset(project=project, key=preset.key, created_by=user)
                added += 1

        self.stdout.write(self.style.SUCCESS(f"Demo ready: team “{team}”, project “{project}”, {added} preset dimension(s) added."))
        self.stdout.write(f"  Log in at  {url.rstrip('/')}/accounts/login/")
        self.stdout.write(f"  Username   {USERNAME}")
        if password_note is not None:
            self.stdout.write(f"  Password   {password_note}")
        else:
            self.stdout.write("  Password   (unchanged: the user already existed; use --reset-password for a new one)")
