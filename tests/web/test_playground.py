"""The playground: a try is validated, stored and sent to the interactive queue; its socket
admits only the run's team and replays the stored state before streaming.

The worker's side (a real model streaming three responses) is tested in
tests/worker/test_playground.py and, through a browser, in tests/browser/test_run_insights.py.
"""
from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from webapp.jobs import probes, queue
from webapp.jobs.consumers import ProbeConsumer
from webapp.jobs.models import Probe


@pytest.fixture
def sent(monkeypatch):
    ids: list[int] = []
    monkeypatch.setattr(queue, "send_probe", lambda probe_id: ids.append(probe_id) or True)
    return ids


def _try(client, run, **overrides):
    data = {"instruction": "Describe your weekend.", "dimension": run.dimensions.first().pk, "gamma": "0.2",
            "layer_start": "", "layer_end": "", "max_new_tokens": "16"}
    data.update(overrides)
    return client.post(reverse("jobs:run_playground", args=[run.pk]), data)


def test_anna_sends_a_try_which_is_queued_for_the_playground_worker(client_for, annotator, ours, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _try(client_for(annotator, htmx=True), ours.run)
    probe = Probe.objects.get()
    assert sent == [probe.pk]
    assert probe.status == "queued" and probe.created_by == annotator and probe.gamma == 0.2 and probe.layer_start is None
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="playground">')
    assert f'data-probe-socket="/ws/probes/{probe.pk}/"' in html and "Waiting for the playground worker" in html
    assert response["HX-Push-Url"] == reverse("jobs:probe", args=[probe.pk])  # a reload keeps the try on screen


def test_without_javascript_a_try_redirects_to_its_own_page(client_for, annotator, ours, sent):
    response = _try(client_for(annotator), ours.run)
    probe = Probe.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("jobs:probe", args=[probe.pk])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("instruction", "   ", "Write an instruction to try"),
    ("gamma", "0", "γ must be above 0 and at most 1"),
    ("gamma", "1.5", "γ must be above 0 and at most 1"),
    ("gamma", "nan", "γ must be above 0 and at most 1"),
    ("max_new_tokens", "0", "Choose between 1 and 256 tokens"),
    ("layer_end", "99", "Give both the first and the last layer"),
])
def test_a_bad_try_is_explained_and_nothing_is_queued(client_for, annotator, ours, sent, field, value, message):
    response = _try(client_for(annotator), ours.run, **{field: value})
    assert response.status_code == 400 and message in response.content.decode()
    assert not Probe.objects.exists() and sent == []


def test_a_layer_outside_the_model_is_refused(client_for, annotator, ours, sent):
    ours.run.model.num_layers = 30
    ours.run.model.save()
    html = _try(client_for(annotator), ours.run, layer_start="10", layer_end="30").content.decode()
    assert "has 30 layers (0–29)" in html and not Probe.objects.exists()


def test_a_dimension_of_another_run_cannot_be_picked(client_for, annotator, ours, theirs, sent):
    response = _try(client_for(annotator), ours.run, dimension=theirs.dimension.pk)
    assert response.status_code == 400 and not Probe.objects.exists()


def test_victor_the_viewer_reads_tries_but_cannot_send_one(client_for, viewer, ours, sent):
    Probe.objects.create(run=ours.run, dimension=ours.dimension, instruction="Say hi.", gamma=0.2,
                         status="succeeded", outputs={"unsteered": "Hi.", "plus": "Hello, friend!", "minus": "Go away."})
    client = client_for(viewer)
    html = client.get(reverse("jobs:run_playground", args=[ours.run.pk])).content.decode()
    assert "Recent tries" in html and "Viewers can read earlier tries" in html
    assert _try(client, ours.run).status_code == 403 and Probe.objects.count() == 1


def test_a_probe_page_shows_the_three_responses_side_by_side(client_for, viewer, ours):
    probe = Probe.objects.create(run=ours.run, dimension=ours.dimension, instruction="Say hi.", gamma=0.2, status="succeeded",
                                 outputs={"unsteered": "Hi.", "plus": "Hello, friend!", "minus": "Go away."})
    html = client_for(viewer).get(reverse("jobs:probe", args=[probe.pk])).content.decode()
    assert '<pre data-side="plus">Hello, friend!</pre>' in html and '<pre data-side="minus">Go away.</pre>' in html


def test_claiming_is_conditional_and_finishing_stores_the_texts(ours):
    probe = Probe.objects.create(run=ours.run, dimension=ours.dimension, instruction="Say hi.", gamma=0.2)
    claimed = probes.probe_claim(probe_id=probe.pk, worker="w1")
    assert claimed is not None and probes.probe_claim(probe_id=probe.pk, worker="w2") is None
    probes.probe_progress(probe=claimed, outputs={"unsteered": "H", "plus": "He", "minus": "G"})
    assert Probe.objects.get().outputs == {"unsteered": "H", "plus": "He", "minus": "G"}
    probes.probe_progress(probe=claimed, outputs={"unsteered": "Hi", "plus": "Hel", "minus": "Go"}, store=False)
    assert Probe.objects.get().outputs["plus"] == "He"  # throttled: only sent, not stored
    probes.probe_finish(probe=claimed, outputs={"unsteered": "Hi.", "plus": "Hello!", "minus": "Go."})
    probe.refresh_from_db()
    assert probe.status == "succeeded" and probe.outputs["plus"] == "Hello!" and probe.finished_at


async def _connect(user, probe_id):
    communicator = WebsocketCommunicator(ProbeConsumer.as_asgi(), f"/ws/probes/{probe_id}/")
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {"pk": probe_id}}
    connected, _ = await communicator.connect()
    return communicator, connected


@pytest.mark.django_db(transaction=True)
def test_the_probe_socket_admits_the_team_replays_the_state_and_streams(ours, outsider, annotator):
    probe = Probe.objects.create(run=ours.run, dimension=ours.dimension, instruction="Say hi.", gamma=0.2)

    async def scenario():
        from channels.db import database_sync_to_async

        stranger, admitted = await _connect(outsider, probe.pk)
        assert not admitted
        member, admitted = await _connect(annotator, probe.pk)
        assert admitted
        snapshot = await member.receive_json_from()
        assert snapshot["snapshot"] and snapshot["status"] == "queued"
        claimed = await database_sync_to_async(probes.probe_claim)(probe_id=probe.pk, worker="w1")
        assert (await member.receive_json_from())["status"] == "running"
        await database_sync_to_async(probes.probe_progress)(probe=claimed, outputs={"unsteered": "A", "plus": "B", "minus": "C"})
        assert (await member.receive_json_from())["outputs"] == {"unsteered": "A", "plus": "B", "minus": "C"}
        await database_sync_to_async(probes.probe_finish)(probe=claimed, outputs={"unsteered": "A.", "plus": "B!", "minus": "C?"})
        final = await member.receive_json_from()
        assert final["status"] == "succeeded" and final["outputs"]["plus"] == "B!"
        await member.disconnect()

    async_to_sync(scenario)()


def test_a_try_whose_worker_stopped_says_so(client_for, annotator, ours):
    import datetime as dt

    from django.utils import timezone

    probe = Probe.objects.create(run=ours.run, dimension=ours.dimension, instruction="Say hi.", gamma=0.2, status="running",
                                 started_at=timezone.now() - dt.timedelta(minutes=10), outputs={"plus": "Hel"})
    html = client_for(annotator).get(reverse("jobs:probe", args=[probe.pk])).content.decode()
    assert "its worker most likely stopped" in html


def test_the_review_queue_links_to_the_playground(client_for, annotator, ours):
    html = client_for(annotator).get(reverse("review:queue", args=[ours.run.pk])).content.decode()
    assert reverse("jobs:run_playground", args=[ours.run.pk]) in html
