"""The worker's chunk runner, in-process (no broker): bad input fails the stage with a clear,
retryable error instead of a traceback or a silent partial result.

Transactional tests: the runner closes stale connections between tasks, as a worker must,
which would close the connection of a test wrapped in a transaction (PostgreSQL)."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from webapp.accounts.services import team_create
from webapp.jobs.models import Chunk
from webapp.studio.models import Run, Stage
from webapp.studio.services import dimension_create, model_create, project_create, run_create, run_launch


@pytest.fixture
def owner(transactional_db):
    return get_user_model().objects.create_user(username="olivia", password="pw-123456789")


def _launched_run(owner, django_capture_on_commit_callbacks, *, model_path: str, layers=(None, None)) -> Run:
    team = team_create(name="Acme", owner=owner)
    project = project_create(team=team, name="P", description="", created_by=owner)
    dim = dimension_create(project=project, name="Cheer", pairs=[("You are cheerful.", "You are gloomy.")],
                           feature_instructions="Describe the sea.\nTell me about a fox.", created_by=owner)
    model = model_create(team=team, created_by=owner, name="Missing", kind="local_dir", path_or_id=model_path)
    run = run_create(project=project, created_by=owner, model=model, dimensions=[dim],
                     config={"name": "R", "layer_start": layers[0], "layer_end": layers[1]})
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=run, actor=owner, override_model_check=True)  # no model there to check
    return run


def test_a_wrong_model_path_fails_the_stage_with_a_message_that_says_so(owner, django_capture_on_commit_callbacks, tmp_path, settings):
    from worker.runner import run_chunk

    settings.MEDIA_ROOT, settings.ICON2_MODEL_ROOTS = tmp_path / "media", [tmp_path / "models"]
    settings.ICON2_LAUNCH_CHECKS = False  # web and worker on separate file systems: the worker is the one that finds out
    run = _launched_run(owner, django_capture_on_commit_callbacks, model_path=str(tmp_path / "models" / "no-such-model"))
    chunk = Chunk.objects.get(stage__run=run, stage__kind="extract")
    run_chunk(chunk.pk)
    stage = Stage.objects.get(run=run, kind="extract")
    assert stage.status == Stage.Status.FAILED
    assert "does not exist" in stage.error and "Traceback" not in stage.error
    assert Run.objects.get(pk=run.pk).status == Run.Status.FAILED
    assert Chunk.objects.get(pk=chunk.pk).status == Chunk.Status.FAILED


def test_running_a_chunk_twice_does_nothing_the_second_time(owner, django_capture_on_commit_callbacks, tmp_path, settings):
    from worker.runner import run_chunk

    settings.MEDIA_ROOT, settings.ICON2_MODEL_ROOTS = tmp_path / "media", [tmp_path / "models"]
    settings.ICON2_LAUNCH_CHECKS = False
    run = _launched_run(owner, django_capture_on_commit_callbacks, model_path=str(tmp_path / "models" / "no-such-model"))
    chunk = Chunk.objects.get(stage__run=run, stage__kind="extract")
    run_chunk(chunk.pk)
    run_chunk(chunk.pk)  # a redelivered message
    assert Chunk.objects.get(pk=chunk.pk).attempts == 1
