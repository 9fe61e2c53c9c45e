"""Run execution as state in the database: stages, chunks, claims, the periodic check.

No model and no broker here (ICON2_QUEUE=none): the worker's side is played by calling the
same services a worker calls. tests/integration runs the real processes.
"""
from __future__ import annotations

import datetime as dt
import json

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import IntegrityError
from django.utils import timezone

from webapp.jobs import events, services
from webapp.jobs.models import Chunk, Instruction, Pair
from webapp.review.services import review_finish
from webapp.studio.models import Run, Stage
from webapp.studio.services import run_cancel, run_launch


@pytest.fixture
def launched(ours, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=ours.run, actor=owner)
    ours.run.refresh_from_db()
    return ours.run


def _finish_chunk(chunk_id: int, worker: str = "w1", write=lambda: None) -> Chunk:
    chunk = services.chunk_claim(chunk_id=chunk_id, worker=worker)
    assert chunk is not None
    assert services.chunk_complete(chunk=chunk, write=write, compute={"wall_s": 1.0, "tokens_in": 3})
    return chunk


def test_launching_a_run_queues_one_chunk_per_dimension_for_extraction(launched):
    extract = launched.stages.get(kind="extract")
    assert launched.status == Run.Status.RUNNING
    assert extract.status == Stage.Status.QUEUED
    assert list(extract.chunks.values_list("start", "stop")) == [(0, 1)]


def test_a_redelivered_message_finds_the_chunk_taken_and_does_nothing(launched):
    chunk_id = launched.stages.get(kind="extract").chunks.get().pk
    assert services.chunk_claim(chunk_id=chunk_id, worker="w1") is not None
    assert services.chunk_claim(chunk_id=chunk_id, worker="w2") is None
    assert Chunk.objects.get(pk=chunk_id).worker == "w1"


def test_a_worker_whose_chunk_was_requeued_cannot_store_its_results(launched):
    chunk_id = launched.stages.get(kind="extract").chunks.get().pk
    stale = services.chunk_claim(chunk_id=chunk_id, worker="w1")
    Chunk.objects.filter(pk=chunk_id).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    assert services.jobs_reap(stale_after_s=60, resend_after_s=600)["requeued"] == 1
    fresh = services.chunk_claim(chunk_id=chunk_id, worker="w2")
    wrote = []
    assert services.chunk_complete(chunk=stale, write=lambda: wrote.append("stale"), compute={}) is False
    assert services.chunk_complete(chunk=fresh, write=lambda: wrote.append("fresh"), compute={}) is True
    assert wrote == ["fresh"]


def test_a_chunk_whose_worker_keeps_dying_fails_with_an_explanation(launched):
    chunk_id = launched.stages.get(kind="extract").chunks.get().pk
    for attempt in range(services.MAX_ATTEMPTS):
        services.chunk_claim(chunk_id=chunk_id, worker=f"w{attempt}")
        Chunk.objects.filter(pk=chunk_id).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
        services.jobs_reap(stale_after_s=60, resend_after_s=600)
    chunk = Chunk.objects.get(pk=chunk_id)
    assert chunk.status == Chunk.Status.FAILED
    assert "stopped responding" in chunk.error
    launched.refresh_from_db()
    assert launched.status == Run.Status.FAILED
    assert "retry" in launched.stages.get(kind="extract").error


def test_a_queued_chunk_whose_message_was_lost_is_sent_again(launched):
    chunk = launched.stages.get(kind="extract").chunks.get()
    Chunk.objects.filter(pk=chunk.pk).update(enqueued_at=timezone.now() - dt.timedelta(minutes=5))
    assert services.jobs_reap(stale_after_s=60, resend_after_s=60)["resent"] == 1
    assert services.jobs_reap(stale_after_s=60, resend_after_s=60)["resent"] == 0


def _through_filter(run, texts, scores):
    """Play extract and filter: store instructions and their raw per-dimension scores."""
    dim = str(run.dimensions.get().pk)
    Instruction.objects.bulk_create(
        Instruction(run=run, index=i, text=t, source="uploaded") for i, t in enumerate(texts)
    )
    _finish_chunk(run.stages.get(kind="extract").chunks.get().pk)
    filter_stage = run.stages.get(kind="filter")
    for chunk in filter_stage.chunks.all():
        def write(chunk=chunk):
            for ins in run.instructions.order_by("index")[chunk.start : chunk.stop]:
                ins.scores = {dim: scores[ins.index]}
                ins.save()
        _finish_chunk(chunk.pk, write=write)


def test_the_filter_keeps_the_requested_fraction_best_first(ours, owner, django_capture_on_commit_callbacks, settings):
    settings.ICON2_SCORE_CHUNK = 3
    Run.objects.filter(pk=ours.run.pk).update(keep_fraction=0.5)
    ours.run.stages.filter(kind="synthesize").update(status=Stage.Status.SKIPPED)
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=ours.run, actor=owner)
    run = Run.objects.get(pk=ours.run.pk)
    scores = [0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.7, 0.4]
    _through_filter(run, [f"instruction {i}" for i in range(8)], scores)
    kept = list(run.instructions.filter(kept=True).order_by("rank").values_list("index", flat=True))
    assert kept == [1, 4, 6, 2]
    generate = run.stages.get(kind="generate")
    assert generate.status == Stage.Status.QUEUED and generate.progress_total == 4


def test_pairs_are_stored_once_per_instruction(ours, owner, django_capture_on_commit_callbacks):
    Run.objects.filter(pk=ours.run.pk).update(keep_fraction=1.0)
    ours.run.stages.filter(kind="synthesize").update(status=Stage.Status.SKIPPED)
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=ours.run, actor=owner)
    run = Run.objects.get(pk=ours.run.pk)
    _through_filter(run, ["a", "b"], [0.2, 0.1])
    ins = run.instructions.get(index=0)
    Pair.objects.create(run=run, instruction=ins, chosen="x", rejected="y", gamma_plus=0.05, gamma_minus=-0.05)
    with pytest.raises(IntegrityError):
        Pair.objects.create(run=run, instruction=ins, chosen="x", rejected="y", gamma_plus=0.05, gamma_minus=-0.05)


def test_a_cancelled_run_hands_out_no_more_chunks(launched, owner):
    chunk_id = launched.stages.get(kind="extract").chunks.get().pk
    run_cancel(run=launched, actor=owner)
    assert services.chunk_claim(chunk_id=chunk_id, worker="w1") is None
    assert Chunk.objects.get(pk=chunk_id).status == Chunk.Status.CANCELLED


def test_a_failed_stage_can_be_retried_and_keeps_finished_chunks(ours, owner, django_capture_on_commit_callbacks, settings):
    settings.ICON2_SCORE_CHUNK = 2
    Run.objects.filter(pk=ours.run.pk).update(keep_fraction=1.0)
    ours.run.stages.filter(kind="synthesize").update(status=Stage.Status.SKIPPED)
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=ours.run, actor=owner)
    run = Run.objects.get(pk=ours.run.pk)
    Instruction.objects.bulk_create(Instruction(run=run, index=i, text=f"t{i}", source="uploaded") for i in range(4))
    _finish_chunk(run.stages.get(kind="extract").chunks.get().pk)
    stage = run.stages.get(kind="filter")
    first, second = stage.chunks.order_by("index")
    _finish_chunk(first.pk)
    failing = services.chunk_claim(chunk_id=second.pk, worker="w1")
    services.chunk_fail(chunk=failing, error="CUDA out of memory")
    stage.refresh_from_db()
    assert stage.status == Stage.Status.FAILED and "out of memory" in stage.error
    services.stage_retry(stage=stage)
    assert Chunk.objects.get(pk=first.pk).status == Chunk.Status.SUCCEEDED
    assert Chunk.objects.get(pk=second.pk).status == Chunk.Status.QUEUED
    assert Run.objects.get(pk=run.pk).status == Run.Status.RUNNING


def test_review_pauses_the_run_until_a_lead_lets_it_continue(ours, owner, django_capture_on_commit_callbacks):
    Run.objects.filter(pk=ours.run.pk).update(keep_fraction=1.0, require_review=True)
    ours.run.stages.filter(kind="synthesize").update(status=Stage.Status.SKIPPED)
    ours.run.stages.filter(kind="review").update(status=Stage.Status.PENDING)
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=ours.run, actor=owner)
    run = Run.objects.get(pk=ours.run.pk)
    _through_filter(run, ["a"], [0.3])
    _finish_chunk(run.stages.get(kind="generate").chunks.get().pk)
    run.refresh_from_db()
    assert run.status == Run.Status.PAUSED
    assert run.stages.get(kind="review").status == Stage.Status.RUNNING
    review_finish(run=run)
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING
    train = run.stages.get(kind="train")
    assert train.status == Stage.Status.QUEUED and train.chunks.count() == 1


def test_every_progress_payload_survives_a_json_round_trip(launched):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.run_group(launched.pk), channel)
    chunk_id = launched.stages.get(kind="extract").chunks.get().pk
    chunk = services.chunk_claim(chunk_id=chunk_id, worker="w1")
    services.chunk_progress(chunk=chunk, done=1, metrics={"acceptance": 0.4})
    services.chunk_complete(chunk=chunk, write=lambda: None, compute={"wall_s": 0.5})
    async def drain():
        import asyncio

        got = []
        while True:
            try:
                got.append(await asyncio.wait_for(layer.receive(channel), timeout=0.2))
            except asyncio.TimeoutError:
                return got

    received = async_to_sync(drain)()
    kinds = {(m["event"]["type"], m["event"].get("stage"), m["event"].get("status")) for m in received}
    assert ("stage", "extract", "running") in kinds and ("stage", "extract", "succeeded") in kinds
    for message in received:
        assert json.loads(json.dumps(message)) == message


def test_the_run_page_shows_training_and_the_win_rate_once_they_exist(ours, owner, client_for):
    run = ours.run
    run.stages.filter(kind="train").update(status="succeeded", metrics={
        "steps": 4, "pairs": 12, "output_dir": "/tmp/x", "final": {"loss": 0.61, "margins": 0.2, "accuracy": 0.75}})
    run.stages.filter(kind="evaluate").update(status="succeeded", metrics={"evaluation": {
        "n": 16, "wins": 11, "ties": 2, "losses": 3, "win_rate": 0.75, "ci_low": 0.5, "ci_high": 0.9, "judge": "vader",
        "mean_score": {"base": 0.3, "trained": 0.6}, "projection": {"base": 1.0, "trained": 2.0}}})
    html = client_for(owner).get(f"/runs/{run.pk}/").content.decode()
    assert "Training and evaluation" in html and "75%</strong> win rate" in html and "11 / 2 / 3" in html
    run.stages.filter(kind="evaluate").update(status="failed")
    assert "win rate" not in client_for(owner).get(f"/runs/{run.pk}/").content.decode()


def _to_generate(ours, owner, django_capture_on_commit_callbacks, settings, n: int = 4):
    settings.ICON2_PAIR_CHUNK = 2
    Run.objects.filter(pk=ours.run.pk).update(keep_fraction=1.0, require_review=False)
    ours.run.stages.filter(kind="synthesize").update(status=Stage.Status.SKIPPED)
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=ours.run, actor=owner)
    run = Run.objects.get(pk=ours.run.pk)
    _through_filter(run, [f"instruction {i}" for i in range(n)], [0.1 * i for i in range(n)])
    return run


def _finish_generate_chunk(chunk_id: int, gate: dict) -> None:
    chunk = services.chunk_claim(chunk_id=chunk_id, worker="w1")
    assert services.chunk_complete(chunk=chunk, write=lambda: None, compute={"wall_s": 1.0, "gate": gate})


def test_the_gate_counts_add_up_over_chunks_into_the_stage_message(ours, owner, django_capture_on_commit_callbacks, settings):
    run = _to_generate(ours, owner, django_capture_on_commit_callbacks, settings)
    first, second = run.stages.get(kind="generate").chunks.order_by("index")
    _finish_generate_chunk(first.pk, {"kept": 2, "dropped": {}, "retries": 1, "examples": []})
    _finish_generate_chunk(second.pk, {"kept": 1, "dropped": {"rejected: repetition": 1}, "retries": 2, "examples": []})
    stage = run.stages.get(kind="generate")
    assert stage.status == Stage.Status.SUCCEEDED
    assert stage.compute["gate"]["kept"] == 3 and stage.compute["gate"]["dropped"] == {"rejected: repetition": 1}
    assert stage.message == "3 pairs kept, 1 dropped (rejected: repetition 1); 3 sides regenerated at a smaller |γ|"


def test_a_generate_stage_whose_every_pair_was_dropped_fails_and_says_which_gamma_to_try(
    ours, owner, django_capture_on_commit_callbacks, settings
):
    run = _to_generate(ours, owner, django_capture_on_commit_callbacks, settings)
    first, second = run.stages.get(kind="generate").chunks.order_by("index")
    _finish_generate_chunk(first.pk, {"kept": 0, "dropped": {"rejected: repetition": 2}, "retries": 4, "examples": []})
    _finish_generate_chunk(second.pk, {"kept": 0, "dropped": {"rejected: repetition": 1, "chosen: foreign": 1}, "retries": 4})
    stage = run.stages.get(kind="generate")
    assert stage.status == Stage.Status.FAILED
    assert "No pair passed the quality gate (4 dropped: rejected: repetition 3, chosen: foreign 1)" in stage.error
    half = (round(run.gamma_plus / 2, 4), round(run.gamma_minus / 2, 4))  # the run's |γ| halved
    assert f"γ⁺ = {half[0]:g}" in stage.error and f"γ⁻ = {half[1]:g}" in stage.error
    assert Run.objects.get(pk=run.pk).status == Run.Status.FAILED
    assert run.stages.get(kind="train").status != Stage.Status.RUNNING
    services.stage_retry(stage=stage)  # a retry generates every chunk again
    assert set(stage.chunks.values_list("status", flat=True)) == {Chunk.Status.QUEUED}


def test_identical_sides_ask_for_a_larger_gamma(ours, owner, django_capture_on_commit_callbacks, settings):
    run = _to_generate(ours, owner, django_capture_on_commit_callbacks, settings, n=2)
    _finish_generate_chunk(run.stages.get(kind="generate").chunks.get().pk, {"kept": 0, "dropped": {"identical sides": 2}})
    stage = run.stages.get(kind="generate")
    assert stage.status == Stage.Status.FAILED and "too weak for the two sides to differ" in stage.error


def test_stage_metrics_merge_keeps_every_key_and_honours_the_status(db):
    from tests.web.conftest import build_world, make_user
    from webapp.jobs.services import stage_metrics_merge

    world = build_world(owner=make_user("mo"), team_name="M", project_name="P")
    stage = world.run.stages.get(kind="train")
    stage_metrics_merge(stage_id=stage.pk, values={"a": 1})
    assert stage_metrics_merge(stage_id=stage.pk, values={"b": 2}) == {"a": 1, "b": 2}
    assert stage_metrics_merge(stage_id=stage.pk, values={"c": 3}, only_if_status="running") is None
    stage.refresh_from_db()
    assert stage.metrics == {"a": 1, "b": 2}


@pytest.mark.skipif("postgres" not in __import__("os").environ.get("DATABASE_URL", ""),
                    reason="row locks need PostgreSQL (CI runs it); SQLite serialises every write anyway")
def test_concurrent_metric_merges_lose_nothing(transactional_db):
    """Writers of one stage's metrics at once (chunks' progress, the filter, a hand-set threshold):
    each merge holds the row lock between its read and its write, so no key is lost."""
    import threading

    from django.db import connection

    from tests.web.conftest import build_world, make_user
    from webapp.jobs.services import stage_metrics_merge

    world = build_world(owner=make_user("mo"), team_name="M", project_name="P")
    stage = world.run.stages.get(kind="filter")
    barrier, errors = threading.Barrier(4), []

    def writer(name):
        try:
            barrier.wait()
            for i in range(15):
                stage_metrics_merge(stage_id=stage.pk, values={f"{name}{i}": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in "wxyz"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stage.refresh_from_db()
    assert not errors and len(stage.metrics) == 60
