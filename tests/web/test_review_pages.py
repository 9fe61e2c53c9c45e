"""The review pages: Anna's queue, the htmx swap, errors shown in place, the lead's page and downloads."""
from __future__ import annotations

from webapp.jobs.models import Pair

import io
import json

import pyarrow.parquet as pq
import pytest
from django.urls import reverse

from webapp.review.models import ReviewAssignment, Verdict

from webapp.studio.models import Run

from .review_helpers import make_pairs

pytestmark = pytest.mark.django_db

COLUMNS = {
    "prompt", "chosen", "rejected", "prompt_id", "pair_id", "dimension", "gamma_plus", "gamma_minus", "layers", "model",
    "model_revision", "seed", "verdict", "annotators", "agreement", "edited", "steering_mode", "pairing", "no_repeat_ngram_size",
    "repetition_penalty", "retries",
}

# What the engine writes per side since it measures whether a response answers its instruction.
ANSWERING = {"chosen_relevance": 0.42, "chosen_relevance_kept": 0.9, "chosen_refusal": 0.0,
             "rejected_relevance": 0.01, "rejected_relevance_kept": None, "rejected_refusal": 1.0}


def _body(response) -> bytes:
    """A response's bytes; exports stream (JSONL) or come from a file (Parquet)."""
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_anna_sees_one_pair_with_unlabelled_sides_and_the_shortcuts(ours, annotator, client_for):
    make_pairs(ours.run, 3)
    content = client_for(annotator).get(reverse("review:queue", args=[ours.run.pk])).content.decode()
    assert "Instruction 0" in content and 'data-text="left"' in content and 'data-text="right"' in content
    assert "γ⁺" not in content and "chosen" not in content.lower().replace("choice", "")
    assert "Keyboard shortcuts" in content and "<kbd>u</kbd>" in content


def _left_and_right(content: str) -> tuple[str, str]:
    left = content.split('id="side-left"', 1)[1].split('id="side-right"', 1)[0]
    right = content.split('id="side-right"', 1)[1].split('id="verdict-form"', 1)[0]
    return left, right


@pytest.mark.parametrize("left_is_chosen", [True, False], ids=["chosen-left", "chosen-right"])
def test_anna_sees_under_each_side_how_relevant_it_is_and_whether_it_refuses(ours, annotator, client_for, left_is_chosen):
    pair = make_pairs(ours.run, 1)[0]
    Pair.objects.filter(pk=pair.pk).update(quality=ANSWERING)
    client = client_for(annotator)
    client.get(reverse("review:queue", args=[ours.run.pk]))
    ReviewAssignment.objects.filter(annotator=annotator).update(left_is_chosen=left_is_chosen)
    content = client.get(reverse("review:queue", args=[ours.run.pk])).content.decode()
    left, right = _left_and_right(content)
    steered_up, steered_down = (left, right) if "kind and helpful" in left else (right, left)
    assert ("kind and helpful" in left) == left_is_chosen and "curt and unhelpful" in steered_down
    assert "Relevance to the request 0.42" in steered_up and "data-refuses" not in steered_up
    assert "Relevance to the request 0.01" in steered_down and "data-refuses>refuses</span>" in steered_down
    assert "chosen" not in content.lower().replace("choice", ""), "still blind"


def test_a_pair_stored_before_answering_was_measured_shows_no_figures(ours, annotator, client_for):
    make_pairs(ours.run, 1)
    content = client_for(annotator).get(reverse("review:queue", args=[ours.run.pk])).content.decode()
    assert "data-answering" not in content and "Relevance to the request" not in content


def test_a_verdict_over_htmx_returns_the_next_pair_without_the_layout(ours, annotator, client_for):
    ours.run.review_k = 3
    ours.run.save()
    make_pairs(ours.run, 2)
    client = client_for(annotator, htmx=True)
    client.get(reverse("review:queue", args=[ours.run.pk]))
    first = ReviewAssignment.objects.filter(annotator=annotator).first()
    response = client.post(reverse("review:verdict", args=[ours.run.pk]), {"assignment": first.pk, "choice": "tie"})
    content = response.content.decode()
    assert response.status_code == 200 and 'class="topbar"' not in content
    assert "Instruction 1" in content and "1 of 2 reviewed" in content
    assert Verdict.objects.get().order == "tie"


def test_an_edit_that_empties_a_response_shows_a_clear_error(ours, annotator, client_for):
    make_pairs(ours.run, 3)
    client = client_for(annotator, htmx=True)
    client.get(reverse("review:queue", args=[ours.run.pk]))
    mine = ReviewAssignment.objects.filter(annotator=annotator).first()
    response = client.post(reverse("review:edit", args=[ours.run.pk]), {"assignment": mine.pk, "side": "left", "text": ""})
    assert "cannot be empty" in response.content.decode()


def test_victor_the_viewer_cannot_submit_verdicts(ours, viewer, client_for):
    make_pairs(ours.run, 3)
    response = client_for(viewer).post(reverse("review:verdict", args=[ours.run.pk]), {"assignment": 1, "choice": "left"})
    assert response.status_code == 403
    assert not Verdict.objects.exists()


def test_anna_cannot_launch_runs_or_open_the_lead_page(ours, annotator, client_for):
    client = client_for(annotator)
    assert client.post(reverse("studio:run_launch", args=[ours.run.pk])).status_code == 403
    assert client.get(reverse("review:lead", args=[ours.run.pk])).status_code == 403


def test_the_run_page_links_to_review_for_annotators_and_to_export_for_leads(ours, annotator, owner, client_for):
    page = client_for(annotator).get(reverse("studio:run", args=[ours.run.pk])).content.decode()
    assert "Review pairs" in page and "Agreement &amp; export" not in page
    page = client_for(owner).get(reverse("studio:run", args=[ours.run.pk])).content.decode()
    assert "Review pairs" in page and "Agreement &amp; export" in page


def test_olivia_downloads_jsonl_and_parquet_with_the_review_columns(ours, owner, client_for):
    ours.run.require_review = False
    ours.run.save()
    make_pairs(ours.run, 3)
    client = client_for(owner)
    lead = client.get(reverse("review:lead", args=[ours.run.pk])).content.decode()
    assert "all pairs are included" in lead
    jsonl = client.get(reverse("review:download", args=[ours.run.pk, "jsonl"]))
    rows = [json.loads(line) for line in b"".join(jsonl.streaming_content if jsonl.streaming else [jsonl.content]).decode().splitlines()]
    assert len(rows) == 3 and set(rows[0]) == COLUMNS
    assert rows[0]["prompt"] == [{"role": "user", "content": "Instruction 0: explain topic 0."}]
    table = pq.read_table(io.BytesIO(_body(client.get(reverse("review:download", args=[ours.run.pk, "parquet"])))))
    assert set(table.column_names) == COLUMNS and table.num_rows == 3
    assert table.to_pylist()[0]["chosen"][0]["role"] == "assistant"
    card = client.get(reverse("review:download", args=[ours.run.pk, "card"])).content.decode()
    assert "Review was not required" in card and "Pairs in this dataset: 3" in card


def test_the_quality_measures_and_the_gate_counts_travel_with_the_dataset(ours, owner, viewer, client_for):
    ours.run.require_review = False
    ours.run.save()
    pairs = make_pairs(ours.run, 2)
    measures = {"chosen_words": 52, "chosen_repetition": 0.02, "chosen_distinct2": 0.95, "chosen_length_ratio": 1.1,
                "chosen_foreign": 0.0, "chosen_loglik": -1.2, "chosen_loglik_drop": 0.3, "rejected_words": 49,
                "rejected_repetition": 0.1, "rejected_distinct2": 0.85, "rejected_length_ratio": 0.9,
                "rejected_foreign": 0.0, "rejected_loglik": -1.5, "rejected_loglik_drop": 0.6}
    Pair.objects.filter(pk=pairs[0].pk).update(quality=measures, retries=[{"side": "rejected", "gamma": -0.05, "reasons": ["repetition"]}])
    ours.run.stages.filter(kind="generate").update(compute={"gate": {
        "kept": 2, "dropped": {"rejected: repetition": 3, "chosen: foreign": 1}, "retries": 5}})
    client = client_for(owner)
    jsonl = client.get(reverse("review:download", args=[ours.run.pk, "jsonl"]))
    rows = [json.loads(line) for line in b"".join(jsonl.streaming_content if jsonl.streaming else [jsonl.content]).decode().splitlines()]
    first = next(r for r in rows if r["prompt"][0]["content"] == pairs[0].instruction.text)
    assert first["rejected_repetition"] == 0.1 and first["chosen_loglik"] == -1.2 and first["retries"] == 1
    assert first["no_repeat_ngram_size"] == ours.run.no_repeat_ngram_size and first["steering_mode"] == "add"
    assert first["pairing"] == "two_sided"  # which sides were steered travels with every pair
    table = pq.read_table(io.BytesIO(_body(client.get(reverse("review:download", args=[ours.run.pk, "parquet"])))))
    assert {"rejected_repetition", "chosen_words", "retries"} <= set(table.column_names)
    card = client.get(reverse("review:download", args=[ours.run.pk, "card"])).content.decode()
    assert "## Quality gate" in card and "rejected: repetition: 3" in card and "Pairs dropped: 4" in card
    page = client_for(viewer).get(reverse("studio:run", args=[ours.run.pk])).content.decode()
    assert 'id="quality-gate"' in page and "rejected: repetition" in page and "4 dropped" in page
    assert "against its instruction (relevance to it, refusals)" in page


def test_the_dataset_card_defines_the_columns_that_say_whether_a_response_answers(ours, owner, client_for):
    ours.run.require_review = False
    ours.run.save()
    pair = make_pairs(ours.run, 1)[0]
    Pair.objects.filter(pk=pair.pk).update(quality=ANSWERING)
    client = client_for(owner)
    card = client.get(reverse("review:download", args=[ours.run.pk, "card"])).content.decode()
    for column in ("chosen_relevance", "rejected_relevance", "chosen_relevance_kept", "rejected_relevance_kept",
                   "chosen_refusal", "rejected_refusal"):
        assert f"`{column}`" in card, column
    table = pq.read_table(io.BytesIO(_body(client.get(reverse("review:download", args=[ours.run.pk, "parquet"])))))
    row = table.to_pylist()[0]
    assert row["chosen_relevance"] == 0.42 and row["rejected_refusal"] == 1.0 and row["rejected_relevance_kept"] is None


def test_a_swapped_pairs_measures_follow_their_text_to_the_other_side(ours, owner):
    from webapp.review import selectors, services

    pair = make_pairs(ours.run, 1)[0]
    Pair.objects.filter(pk=pair.pk).update(quality=ANSWERING)
    services.pair_resolve(run=ours.run, pair=pair, outcome="swap", based_on_version=0, user=owner)
    (row,), _ = selectors.dataset_rows(run=Run.objects.get(pk=ours.run.pk))
    assert "curt and unhelpful" in row["chosen"][0]["content"]
    assert row["chosen_relevance"] == 0.01 and row["chosen_refusal"] == 1.0 and row["chosen_relevance_kept"] is None
    assert row["rejected_relevance"] == 0.42 and row["rejected_refusal"] == 0.0


def test_anna_is_not_shown_which_response_was_steered_up_on_the_run_page(ours, annotator, viewer, client_for):
    make_pairs(ours.run, 2)
    assert 'id="pairs"' not in client_for(annotator).get(reverse("studio:run", args=[ours.run.pk])).content.decode()
    assert 'id="pairs"' in client_for(viewer).get(reverse("studio:run", args=[ours.run.pk])).content.decode()


def test_a_stale_resolution_on_the_lead_page_shows_an_error_and_changes_nothing(ours, owner, client_for):
    from webapp.review.models import Resolution

    pair = make_pairs(ours.run, 1)[0]
    response = client_for(owner).post(
        reverse("review:resolve", args=[ours.run.pk, pair.pk]), {"outcome": "swap", "version": "5"}, follow=True
    )
    assert "Someone changed this pair" in response.content.decode()
    assert not Resolution.objects.exists()


def test_olivia_sees_everyones_progress_and_resolves_a_disagreement(ours, owner, engineer, client_for):
    from webapp.review import selectors, services

    ours.run.review_k = 2
    ours.run.save()
    pair = make_pairs(ours.run, 1)[0]
    services.review_assign(run=ours.run)
    first, second = pair.assignments.all()
    services.verdict_submit(run=ours.run, user=first.annotator, assignment_id=first.pk, choice="left")
    services.verdict_submit(run=ours.run, user=second.annotator, assignment_id=second.pk, choice="right" if first.left_is_chosen == second.left_is_chosen else "left")
    client = client_for(owner)
    page = client.get(reverse("review:lead", args=[ours.run.pk])).content.decode()
    assert first.annotator.get_username() in page and "1 / 1" in page
    assert 'data-unresolved>1<' in page
    version = selectors.pair_review_get(pair=pair).version
    client.post(reverse("review:resolve", args=[ours.run.pk, pair.pk]), {"outcome": "drop", "version": version})
    assert selectors.pair_review_get(pair=pair).outcome == "drop"
    assert 'data-unresolved>0<' in client.get(reverse("review:lead", args=[ours.run.pk])).content.decode()


def test_exports_stream_a_batch_of_pairs_at_a_time_and_say_what_the_whole_dataset_says(ours, owner, client_for, monkeypatch):
    from webapp.review import selectors

    Run.objects.filter(pk=ours.run.pk).update(require_review=False)
    make_pairs(ours.run, 5)
    run = Run.objects.get(pk=ours.run.pk)
    whole, meta = selectors.dataset_rows(run=run)
    monkeypatch.setattr(selectors, "DATASET_BATCH", 2)
    response = client_for(owner).get(reverse("review:download", args=[ours.run.pk, "jsonl"]))
    parts = list(response.streaming_content)
    assert len(parts) == 3  # 2 + 2 + 1 pairs: never the dataset at once
    assert [json.loads(line) for line in b"".join(parts).decode().splitlines()] == whole
    table = pq.read_table(io.BytesIO(_body(client_for(owner).get(reverse("review:download", args=[ours.run.pk, "parquet"])))))
    assert table.num_rows == 5 and pq.ParquetFile(io.BytesIO(_body(client_for(owner).get(
        reverse("review:download", args=[ours.run.pk, "parquet"]))))).num_row_groups == 3
    assert selectors.dataset_summary(run=run)["counts"] == meta["counts"] == {"not_reviewed": 5}
