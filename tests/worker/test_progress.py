"""The worker's progress reporter: training points accumulate into the stage's live curve."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from webapp.accounts.services import team_create
from webapp.jobs import services
from webapp.jobs.models import Chunk
from webapp.studio.models import Stage
from webapp.studio.services import dimension_create, model_embedded_ensure, project_create, run_create


@pytest.fixture
def train_chunk(transactional_db):
    owner = get_user_model().objects.create_user(username="olivia", password="pw-123456789")
    team = team_create(name="Acme", owner=owner)
    project = project_create(team=team, name="P", description="", created_by=owner)
    dim = dimension_create(project=project, name="Cheer", pairs=[("You are cheerful.", "You are gloomy.")], created_by=owner)
    run = run_create(project=project, created_by=owner, model=model_embedded_ensure(), dimensions=[dim], config={"name": "R"})
    run.status = "running"
    run.save()
    stage = run.stages.get(kind="train")
    Stage.objects.filter(pk=stage.pk).update(status="queued", progress_total=100)
    chunk = Chunk.objects.create(stage=stage, index=0, start=0, stop=100)
    return services.chunk_claim(chunk_id=chunk.pk, worker="w1")


def test_each_logged_training_step_joins_the_live_curve(train_chunk, settings):
    from worker.progress import ChunkProgress

    settings.ICON2_PROGRESS_INTERVAL_MS = 0
    progress = ChunkProgress(train_chunk, percent=True, curve=True)
    progress.start("train", 3)
    progress.advance(0, resumed_from=0)  # not a logged step: no point
    for step, loss in enumerate((0.69, 0.62, 0.55), start=1):
        progress.advance(1, loss=loss, margins=0.1 * step, accuracy=0.5)
    stage = Stage.objects.get(pk=train_chunk.stage_id)
    assert [p["loss"] for p in stage.metrics["curve"]] == [0.69, 0.62, 0.55]
    assert [p["step"] for p in stage.metrics["curve"]] == [1, 2, 3] and stage.metrics["loss"] == 0.55
    assert stage.progress_done == 100
