"""The run page's evidence tabs: directions, the consistency filter, calibration, training, cost.

Runs here are written the way the worker writes them (tests/web/finished.py); no model is
loaded. tests/browser/test_run_insights.py opens the same tabs on a real run.
"""
from __future__ import annotations

import pytest
from django.urls import reverse

from webapp.jobs import diagnostics, filtering, services
from webapp.jobs.models import Chunk, Instruction
from webapp.studio.models import Dimension, Stage

from .finished import finish_run


@pytest.fixture
def finished(ours):
    second = Dimension.objects.create(project=ours.project, name="Honesty")
    return finish_run(ours.run, second_dimension=second)


def _get(client, name, run, **params):
    return client.get(reverse(name, args=[run.pk]), params).content.decode()


def test_olivia_sees_each_layers_separation_with_the_steered_band_marked(client_for, owner, finished):
    html = _get(client_for(owner), "jobs:run_directions", finished)
    assert "<svg" in html and "steered" in html
    assert html.count('class="in-band"') == 2 * 10  # layers 10–19 of 30, for both dimensions
    assert "Steered layers 10–19" in html and "Best single layer" in html
    assert "Are the dimensions distinct?" in html and "The directions are distinct" in html


def test_overlapping_dimensions_are_called_out(client_for, owner, finished):
    stage = finished.stages.get(kind="extract")
    dims = stage.metrics["cosines"]["dimensions"]
    stage.metrics["cosines"]["layers"] = [[[1.0, 0.8], [0.8, 1.0]]] * 30
    stage.save()
    assert "Some directions overlap (|cos| up to 0.80)" in _get(client_for(owner), "jobs:run_directions", finished)
    assert len(dims) == 2


def test_the_histogram_shows_every_scored_instruction_and_the_current_threshold(client_for, owner, finished):
    html = _get(client_for(owner), "jobs:run_filter", finished)
    assert "20 instructions scored" in html and '<strong id="kept-now">5</strong>' in html
    assert 'data-kept="5"' in html and "keep ≥" in html
    panel = diagnostics.filter_panel(run=finished)
    assert sum(b.count for b in panel.bins) == 20 and sum(b.kept for b in panel.bins) == 5


def test_moving_the_threshold_previews_the_kept_count_and_the_instructions_either_side(client_for, viewer, finished):
    html = _get(client_for(viewer, htmx=True), "jobs:run_filter", finished, threshold="0.25", preview="1")
    assert html.startswith('<div id="filter-preview">')
    assert 'data-kept="7"' in html  # scores 0.3 … 0.9
    above = html.split('id="just-above"')[1].split("</ul>")[0]
    below = html.split('id="just-below"')[1].split("</ul>")[0]
    assert "Instruction number 13" in above and "Instruction number 12" in below
    assert finished.instructions.filter(kept=True).count() == 5  # a preview stores nothing


def test_applying_a_threshold_refilters_from_stored_scores_without_any_model_call(client_for, engineer, finished, monkeypatch):
    from webapp.jobs import queue

    sent: list[int] = []
    monkeypatch.setattr(queue, "send_chunk", lambda chunk_id, **kw: sent.append(chunk_id) or True)
    before = dict(finished.instructions.values_list("pk", "scores"))
    consistency = dict(finished.instructions.values_list("pk", "consistency"))
    filter_chunks = Chunk.objects.filter(stage__run=finished, stage__kind="filter").count()
    response = client_for(engineer).post(reverse("jobs:run_filter", args=[finished.pk]), {"threshold": "-0.05"}, follow=True)
    html = response.content.decode()
    assert "Threshold -0.05 applied: 10 of 20 instructions kept" in html
    assert finished.instructions.filter(kept=True).count() == 10
    assert set(finished.instructions.filter(kept=True).values_list("index", flat=True)) == set(range(10, 20))
    assert dict(finished.instructions.values_list("pk", "scores")) == before  # not recomputed
    assert dict(finished.instructions.values_list("pk", "consistency")) == consistency
    # No scoring work exists or was sent: the only model work queued is the next stage's.
    assert Chunk.objects.filter(stage__run=finished, stage__kind="filter").count() == filter_chunks
    assert not Chunk.objects.filter(pk__in=sent, stage__kind="filter").exists()
    stage = finished.stages.get(kind="filter")
    assert stage.metrics["kept"] == 10 and stage.metrics["threshold"] == -0.05 and stage.status == "succeeded"


def test_a_new_threshold_on_a_finished_run_regenerates_the_pairs(engineer, finished, django_capture_on_commit_callbacks):
    asked = finished.keep_fraction
    with django_capture_on_commit_callbacks(execute=True):
        result = filtering.filter_threshold_apply(run=finished, threshold=0.45)
    finished.refresh_from_db()
    assert result == {"kept": 5, "scored": 20, "threshold": 0.45, "regenerating": True}
    assert finished.pairs.count() == 0 and finished.status == "running"
    stages = dict(finished.stages.values_list("kind", "status"))
    assert stages["filter"] == "succeeded" and stages["calibrate"] == "queued"
    assert stages["generate"] == stages["train"] == stages["evaluate"] == "pending"
    assert finished.keep_fraction_used == finished.keep_fraction_effective == 0.25
    assert finished.keep_fraction == asked  # what the user asked for stays beside what the threshold keeps


def test_new_pairs_train_from_scratch_not_from_the_old_checkpoints(finished, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.MEDIA_ROOT = str(tmp_path)
    trained = tmp_path / "teams" / "1" / "runs" / str(finished.pk) / "trained"
    (trained / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    stage = finished.stages.get(kind="train")
    stage.metrics = {**stage.metrics, "output_dir": str(trained)}
    stage.save()
    with django_capture_on_commit_callbacks(execute=True):
        filtering.filter_threshold_apply(run=finished, threshold=0.0)
    assert not trained.exists()


def test_a_cancelled_run_with_a_new_threshold_goes_back_to_work(finished, django_capture_on_commit_callbacks):
    finished.status = "cancelled"
    finished.save()
    with django_capture_on_commit_callbacks(execute=True):
        filtering.filter_threshold_apply(run=finished, threshold=0.0)
    finished.refresh_from_db()
    assert finished.status == "running" and finished.stages.get(kind="calibrate").status == "queued"


def test_an_annotators_edit_also_blocks_a_new_threshold(finished, annotator):
    from django.core.exceptions import ValidationError

    from webapp.review.models import PairEdit

    pair = finished.pairs.first()
    PairEdit.objects.create(pair=pair, side="chosen", original=pair.chosen, text="Better.", editor=annotator)
    with pytest.raises(ValidationError, match="reviewed or edited"):
        filtering.filter_threshold_apply(run=finished, threshold=0.0)
    assert finished.pairs.count() == 5 and PairEdit.objects.count() == 1


def test_a_threshold_is_refused_while_the_run_works_or_once_pairs_are_reviewed(finished, annotator):
    from django.core.exceptions import ValidationError

    from webapp.review.models import ReviewAssignment, Verdict

    finished.status = "running"
    finished.save()
    with pytest.raises(ValidationError, match="The run is working"):
        filtering.filter_threshold_apply(run=finished, threshold=0.0)
    finished.status = "paused"
    finished.save()
    pair = finished.pairs.first()
    assignment = ReviewAssignment.objects.create(pair=pair, annotator=annotator, left_is_chosen=True)
    Verdict.objects.create(assignment=assignment, choice="left", order="confirm")
    with pytest.raises(ValidationError, match="Annotators have already reviewed"):
        filtering.filter_threshold_apply(run=finished, threshold=0.0)
    with pytest.raises(ValidationError, match="No instruction scores 5 or more"):
        Verdict.objects.all().delete()
        filtering.filter_threshold_apply(run=finished, threshold=5)
    assert finished.instructions.filter(kept=True).count() == 5


def test_a_threshold_that_is_not_a_number_is_explained(client_for, engineer, finished):
    html = client_for(engineer).post(reverse("jobs:run_filter", args=[finished.pk]), {"threshold": "high"}).content.decode()
    assert "“high” is not a number" in html and finished.instructions.filter(kept=True).count() == 5


def test_an_annotator_may_look_at_the_histogram_but_not_move_the_threshold(client_for, annotator, finished):
    client = client_for(annotator)
    assert client.get(reverse("jobs:run_filter", args=[finished.pk])).status_code == 200
    assert client.post(reverse("jobs:run_filter", args=[finished.pk]), {"threshold": "0"}).status_code == 403
    assert finished.instructions.filter(kept=True).count() == 5


def test_calibration_curves_mark_the_picked_gamma_and_the_coherence_floor(client_for, owner, finished):
    html = _get(client_for(owner), "jobs:run_calibration", finished)
    assert "γ⁺ = 0.1" in html and "γ⁻ = -0.1" in html
    assert "γ⁺ 0.1" in html and "coherence floor" in html and "-3.40 nats per token" in html
    assert html.count('class="picked"') == 1
    panel = diagnostics.calibration_panel(run=finished)
    assert [p["gamma"] for p in panel.by_gamma] == [-0.1, -0.05, 0.0, 0.05, 0.1]


def test_a_run_without_calibration_says_so_and_points_at_the_playground(client_for, owner, ours):
    html = _get(client_for(owner), "jobs:run_calibration", ours.run)
    assert "calibration was off" in html and reverse("jobs:run_playground", args=[ours.run.pk]) in html


def test_training_curves_and_the_win_rate_with_its_interval(client_for, viewer, finished):
    html = _get(client_for(viewer), "jobs:run_training", finished)
    assert 'data-steps="3"' in html and "DPO loss" in html and "Reward margin and accuracy" in html
    assert "75%</strong> win rate" in html and "50–90%" in html and "11 / 2 / 3" in html


LESS_RELEVANT = ("The trained model wins on the dimension, but its answers are less relevant to the instructions than the "
                 "base model's (it wins 30% on relevance, ties half). Read its answers before using it; the pairs likely "
                 "taught it something besides the dimension.")


def test_a_trained_model_that_answers_worse_than_its_base_is_flagged_beside_the_win_rate(client_for, viewer, finished):
    evaluate = finished.stages.get(kind="evaluate")
    evaluate.metrics["evaluation"]["answering"] = {
        "relevance_win": 0.3, "relevance": {"base": 0.31, "trained": 0.12},
        "refusal": {"base": 0.0, "trained": 0.25}, "degenerate": {"base": 0.0625, "trained": 0.125}, "warning": LESS_RELEVANT}
    evaluate.save(update_fields=["metrics"])
    client = client_for(viewer)
    for html in (_get(client, "jobs:run_training", finished), _get(client, "studio:run", finished)):
        assert "Relevance vs base" in html and "30% (ties half)" in html
        assert "base 0% · trained 25%" in html and "base 6% · trained 12%" in html
        assert 'data-warning="answering"' in html and "it wins 30% on relevance, ties half" in html


def test_a_run_evaluated_before_answering_was_measured_shows_only_the_judges_figures(client_for, viewer, finished):
    client = client_for(viewer)
    for html in (_get(client, "jobs:run_training", finished), _get(client, "studio:run", finished)):
        assert "75%</strong> win rate" in html
        assert "Relevance vs base" not in html and 'data-warning="answering"' not in html


def test_the_live_partial_carries_the_training_curve_while_dpo_runs(client_for, viewer, ours):
    """What the run page fetches when its socket says the run changed (or while it polls): only
    #run-live, with the head, the tabs and the open tab's live block; no site chrome, no settings."""
    ours.run.stages.filter(kind="train").update(status="running", metrics={"curve": [{"step": 1, "loss": 0.69, "margins": 0.0, "accuracy": 0.5}]})
    client = client_for(viewer)
    html = client.get(reverse("jobs:run_training", args=[ours.run.pk]) + "?live=1", HTTP_HX_REQUEST="true").content.decode()
    assert html.count('id="run-live"') == 1 and 'id="training-live"' in html and 'data-steps="1"' in html
    assert "badge-running" in html and 'hx-swap-oob' not in html
    assert 'class="topbar"' not in html and 'id="stage-train"' not in html  # the training tab has no stage table
    overview = client.get(reverse("studio:run", args=[ours.run.pk]) + "?live=1", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="stage-train"' in overview and "training-live" not in overview and 'id="settings"' not in overview
    page = client.get(reverse("studio:run", args=[ours.run.pk])).content.decode()
    assert 'id="settings"' in page and 'data-socket="/ws/runs/%d/"' % ours.run.pk in page
    assert 'hx-get="%s?live=1"' % reverse("studio:run", args=[ours.run.pk]) in page


def test_the_cost_panel_sets_compute_per_stage_against_the_sample_and_rank_estimate(client_for, owner, finished):
    html = _get(client_for(owner), "jobs:run_cost", finished)
    assert "Sample-and-rank (estimate)" in html and "6.0 s" in html
    # extract + filter + calibrate + generate = 8 s against 6 s
    assert "<strong>8.0 s</strong>" in html and "<strong>1.33×</strong>" in html and "<strong>0.33×</strong>" in html
    assert html.count("2.00 s") == 8  # every stage's wall time in the table


def test_every_tab_works_on_a_draft_run_with_nothing_recorded(client_for, owner, ours):
    for name in ("jobs:run_directions", "jobs:run_filter", "jobs:run_calibration", "jobs:run_training", "jobs:run_cost", "jobs:run_playground"):
        response = client_for(owner).get(reverse(name, args=[ours.run.pk]))
        assert response.status_code == 200, name
        assert 'class="tabs"' in response.content.decode()


def test_a_training_run_with_the_reward_hacking_signature_is_flagged_in_plain_words(client_for, viewer, finished):
    train = finished.stages.get(kind="train")
    assert "Possible reward hacking" not in _get(client_for(viewer), "jobs:run_training", finished)
    warning = {"kind": "early_accuracy", "step": 1,
               "message": "Reward accuracy reached 1.00 at step 1 of 12 (within the first 10%)."}
    train.metrics = {**train.metrics, "warnings": [warning], "gaps": {
        "pairs": 12, "chosen_longer": 0.25, "chosen_shorter": 0.0, "rejected_repeats_more": 0.0, "chosen_repeats_more": 0.0}}
    train.save(update_fields=["metrics"])
    html = _get(client_for(viewer), "jobs:run_training", finished)
    assert "Possible reward hacking" in html and "reached 1.00 at step 1 of 12" in html and 'data-warning="early_accuracy"' in html
    assert 'id="side-gaps"' in html and "chosen longer by a quarter or more in 25%" in html


def test_the_run_socket_sends_small_json_for_the_page_to_refetch_on(viewer, ours):
    """The run page's socket carries no HTML: the stored state first (marked snapshot), then each
    event as JSON; the page only takes a message as a cue to fetch its live partial."""
    import json

    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from webapp.jobs import events
    from webapp.jobs.consumers import RunProgressConsumer

    n_stages = ours.run.stages.count()

    async def watch():
        communicator = WebsocketCommunicator(RunProgressConsumer.as_asgi(), f"/ws/runs/{ours.run.pk}/")
        communicator.scope["user"] = viewer
        communicator.scope["url_route"] = {"kwargs": {"pk": ours.run.pk}}
        connected, _ = await communicator.connect()
        assert connected
        first = [json.loads(await communicator.receive_from()) for _ in range(n_stages + 1)]
        from channels.layers import get_channel_layer

        await get_channel_layer().group_send(events.run_group(ours.run.pk), {
            "type": "run.event", "event": {"type": "stage", "run": ours.run.pk, "stage": "extract", "status": "running"}})
        later = json.loads(await communicator.receive_from())
        await communicator.disconnect()
        return first, later

    first, later = async_to_sync(watch)()
    assert all(e["snapshot"] for e in first) and {e["type"] for e in first} == {"stage", "run"}
    assert later == {"type": "stage", "run": ours.run.pk, "stage": "extract", "status": "running"}


def test_the_run_page_shows_what_was_asked_beside_what_was_used(client_for, engineer, finished):
    from webapp.jobs.stores import run_gamma_store
    from webapp.studio.models import Run

    run_gamma_store(run_id=finished.pk, gamma_plus=0.04, gamma_minus=-0.02)  # what calibration picked
    Run.objects.filter(pk=finished.pk).update(keep_fraction_used=0.25)  # what a moved threshold keeps
    finished.refresh_from_db()
    assert (finished.gamma_plus, finished.gamma_minus) == (0.08, -0.03)  # the request stays
    assert (finished.gamma_plus_effective, finished.gamma_minus_effective) == (0.04, -0.02)
    html = client_for(engineer).get(reverse("studio:run", args=[finished.pk])).content.decode()
    assert 'calibrated by a judge; <span id="gamma-used">used 0.04 / -0.02</span>' in html
    assert "0.1 asked" in html and '<span id="keep-fraction-used">0.25 kept' in html
