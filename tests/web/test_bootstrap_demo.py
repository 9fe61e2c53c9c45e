"""`manage.py bootstrap_demo`: the first account and a demo project, safe to run again."""

from __future__ import annotations

from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command

from webapp.accounts.models import Membership
from webapp.studio.models import Dimension, ModelSpec, Project


def _bootstrap(*args: str) -> str:
    out = StringIO()
    call_command("bootstrap_demo", *args, stdout=out)
    return out.getvalue()


def test_it_creates_the_demo_owner_project_presets_and_embedded_model(db, monkeypatch):
    monkeypatch.setenv("ICON2_DEMO_PASSWORD", "demo-password-1")
    output = _bootstrap()
    demo = get_user_model().objects.get(username="demo")
    assert demo.check_password("demo-password-1") and not demo.is_superuser
    assert Membership.objects.get(user=demo, team__name="Demo team").role == "owner"
    project = Project.objects.get(name="Demo project")
    assert set(Dimension.objects.filter(project=project).values_list("preset_key", flat=True)) == {
        "helpfulness", "honesty", "harmlessness", "general", "optimism",
    }
    assert ModelSpec.objects.filter(team__isnull=True, kind="embedded").count() == 1
    assert "/accounts/login/" in output and "Username   demo" in output and "demo-password-1" in output


def test_without_a_password_in_the_environment_it_prints_a_random_one(db, monkeypatch):
    monkeypatch.delenv("ICON2_DEMO_PASSWORD", raising=False)
    output = _bootstrap()
    password = output.split("Password   ", 1)[1].split()[0]
    assert len(password) >= 12 and get_user_model().objects.get(username="demo").check_password(password)


def test_running_it_again_changes_nothing_and_keeps_the_password(db, monkeypatch):
    monkeypatch.setenv("ICON2_DEMO_PASSWORD", "first-password-1")
    _bootstrap()
    monkeypatch.setenv("ICON2_DEMO_PASSWORD", "second-password-2")
    output = _bootstrap()
    assert "unchanged" in output and "second-password-2" not in output
    assert get_user_model().objects.get(username="demo").check_password("first-password-1")
    assert Project.objects.count() == 1 and Dimension.objects.count() == 5


def test_reset_password_sets_a_new_one(db, monkeypatch):
    _bootstrap()
    monkeypatch.setenv("ICON2_DEMO_PASSWORD", "reset-password-3")
    output = _bootstrap("--reset-password")
    assert "reset-password-3" in output
    assert get_user_model().objects.get(username="demo").check_password("reset-password-3")
