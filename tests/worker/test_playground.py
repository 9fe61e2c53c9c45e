"""The playground task in-process (no broker): a try on the embedded model streams three
growing texts to the channel layer and stores the final ones; a broken model fails the try
with a message, not a traceback."""
from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model

from webapp.accounts.services import team_create
from webapp.jobs import events
from webapp.jobs.models import Probe
from webapp.studio.services import dimension_create, model_create, model_embedded_ensure, project_create, run_create


@pytest.fixture
def owner(transactional_db):
    return get_user_model().objects.create_user(username="olivia", password="pw-123456789")


def _probe(owner, model, **fields) -> Probe:
    team = team_create(name="Acme", owner=owner)
    project = project_create(team=team, name="P", description="", created_by=owner)
    dim = dimension_create(project=project, name="Cheer", pairs=[("You are cheerful and optimistic.", "You are gloomy and pessimistic.")],
                           feature_instructions="Describe the sea.\nTell me about a fox.\nWhat is a good day?\nDescribe a city at night.",
                           created_by=owner)
    run = run_create(project=project, created_by=owner, model=model(team), dimensions=[dim], config={"name": "R"})
    return Probe.objects.create(run=run, dimension=dim, created_by=owner, instruction="Describe your week at work.", **fields)


def _drain(channel: str) -> list[dict]:
    layer = get_channel_layer()

    async def go():
        import asyncio

        got = []
        while True:
            try:
                got.append((await asyncio.wait_for(layer.receive(channel), timeout=0.2))["event"])
            except asyncio.TimeoutError:
                return got

    return async_to_sync(go)()


@pytest.mark.slow
def test_a_try_on_the_embedded_model_streams_three_different_responses(owner):
    from worker.playground import run_probe

    probe = _probe(owner, lambda team: model_embedded_ensure(), gamma=0.1, max_new_tokens=16)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.probe_group(probe.pk), channel)
    run_probe(probe.pk)
    probe.refresh_from_db()
    assert probe.status == "succeeded", probe.error
    outputs = probe.outputs
    assert set(outputs) == {"unsteered", "plus", "minus"} and all(outputs.values())
    assert len(set(outputs.values())) == 3
    received = _drain(channel)
    streamed = [e["outputs"]["plus"] for e in received if e["status"] == "running" and e["outputs"].get("plus")]
    assert len(streamed) > 3 and all(b.startswith(a) for a, b in zip(streamed, streamed[1:]))  # grew token by token
    assert received[-1]["status"] == "succeeded" and received[-1]["outputs"] == outputs


def test_a_try_against_a_missing_model_fails_with_a_message(owner, tmp_path, settings):
    from worker.playground import run_probe

    settings.ICON2_MODEL_ROOTS = [tmp_path]
    probe = _probe(owner, lambda team: model_create(team=team, created_by=owner, name="Missing", kind="local_dir",
                                                    path_or_id=str(tmp_path / "nope")), gamma=0.1)
    run_probe(probe.pk)
    probe.refresh_from_db()
    assert probe.status == "failed" and "does not exist" in probe.error and "Traceback" not in probe.error
    run_probe(probe.pk)  # a redelivered message finds it finished and does nothing
    assert Probe.objects.get(pk=probe.pk).error == probe.error
