"""Shared setup for the worker tests that run real handlers on the real tiny model."""
from __future__ import annotations

import pytest


@pytest.fixture
def tiny(transactional_db, tmp_path, settings):
    """Olivia's team with the tiny test model saved as a local folder (under ICON2_MODEL_ROOTS) and
    one dimension, Cheer; media under tmp_path. Returns (owner, project, dimension, model)."""
    from django.contrib.auth import get_user_model

    from tests.engine.conftest import make_tiny_lm
    from webapp.accounts.services import team_create
    from webapp.studio.services import dimension_create, model_create, project_create

    settings.ICON2_MODEL_ROOTS = [tmp_path]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    lm = make_tiny_lm()
    lm.model.save_pretrained(tmp_path / "tiny")
    lm.tokenizer.save_pretrained(tmp_path / "tiny")
    owner = get_user_model().objects.create_user(username="olivia", password="pw-123456789")
    team = team_create(name="Acme", owner=owner)
    project = project_create(team=team, name="P", description="", created_by=owner)
    dim = dimension_create(project=project, name="Cheer", pairs=[("You are cheerful.", "You are gloomy.")],
                           feature_instructions="Describe the sea.\nTell me about a fox.\nWhat is a good breakfast?", created_by=owner)
    model = model_create(team=team, created_by=owner, name="Tiny", kind="local_dir", path_or_id=str(tmp_path / "tiny"))
    # Its random weights answer noise, so a real check fails it; these tests launch runs for other reasons.
    model.checks.update(status="succeeded", result={"ok": True, "flags": []})
    return owner, project, dim, model
