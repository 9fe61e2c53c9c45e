"""Named people for the web tests.

Olivia owns “Acme alignment”; Eddie is its engineer, Anna its annotator, Victor its viewer.
Oscar is an outsider: he owns “Other lab”, with its own project, dimension, model and run, so
cross-team access is tested in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from webapp.accounts.models import Membership, Team
from webapp.accounts.roles import Role
from webapp.accounts.services import team_create
from webapp.studio.models import Dimension, ModelSpec, Project, Run
from webapp.studio.services import (
    dimension_create,
    model_create,
    model_embedded_ensure,
    project_create,
    run_create,
)

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def make_user(username: str):
    return get_user_model().objects.create_user(username=username, password=PASSWORD)


@dataclass
class TeamWorld:
    team: Team
    project: Project
    dimension: Dimension
    model: ModelSpec
    run: Run


def build_world(*, owner, team_name: str, project_name: str) -> TeamWorld:
    team = team_create(name=team_name, owner=owner)
    project = project_create(team=team, name=project_name, description="", created_by=owner)
    dimension = dimension_create(
        project=project,
        name="Helpfulness",
        pairs=[("You are a helpful assistant.", "You are a helpless assistant.")],
        created_by=owner,
    )
    model = model_create(team=team, created_by=owner, name="Local Llama", kind="local_dir", path_or_id="/models/llama")
    run = run_create(
        project=project, created_by=owner, model=model_embedded_ensure(), dimensions=[dimension], config={"name": "First run"}
    )
    return TeamWorld(team=team, project=project, dimension=dimension, model=model, run=run)


@pytest.fixture
def owner(db):
    return make_user("olivia")


@pytest.fixture
def engineer(db):
    return make_user("eddie")


@pytest.fixture
def annotator(db):
    return make_user("anna")


@pytest.fixture
def viewer(db):
    return make_user("victor")


@pytest.fixture
def outsider(db):
    return make_user("oscar")


@pytest.fixture
def ours(owner, engineer, annotator, viewer) -> TeamWorld:
    world = build_world(owner=owner, team_name="Acme alignment", project_name="Support tone")
    for user, role in [(engineer, Role.ENGINEER), (annotator, Role.ANNOTATOR), (viewer, Role.VIEWER)]:
        Membership.objects.create(team=world.team, user=user, role=role)
    return world


@pytest.fixture
def theirs(outsider) -> TeamWorld:
    return build_world(owner=outsider, team_name="Other lab", project_name="Secret project")


@pytest.fixture
def people(owner, engineer, annotator, viewer, outsider) -> dict[str, Any]:
    return {"owner": owner, "engineer": engineer, "annotator": annotator, "viewer": viewer, "outsider": outsider}


@pytest.fixture
def client_for(ours, theirs):
    """A logged-in test client for a person; `htmx=True` sends HX-Request on every request."""

    def make(user, *, htmx: bool = False) -> Client:
        client = Client(headers={"HX-Request": "true"} if htmx else {})
        client.force_login(user)
        return client

    return make
