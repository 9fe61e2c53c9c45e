"""The filter's finalisation, threshold and preview work on arrays and ranges (issue 15, item 1),
and give what the per-row version gave: computed here by hand, row by row, beside them."""
from __future__ import annotations

import random

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from webapp.jobs.diagnostics import filter_panel
from webapp.jobs.models import FilterScores, Instruction
from webapp.jobs.filtering import filter_finalize, filter_threshold_apply
from webapp.studio.models import Run, Stage
from webapp.studio.services import dimension_create


def _by_hand(rows: list[dict], keep_fraction: float):
    """The earlier row-by-row algorithm: centre per dimension, winner = best centred score."""
    dims = sorted({d for r in rows for d in r["scores"]})
    means = {d: sum(r["scores"][d] for r in rows) / len(rows) for d in dims}
    out = {}
    for r in rows:
        centred = {d: r["scores"][d] - means[d] for d in dims}
        winner = max(dims, key=lambda d: centred[d])
        out[r["index"]] = (centred[winner], int(winner))
    order = sorted(out, key=lambda i: (-out[i][0], i))
    keep = max(1, round(len(order) * keep_fraction))
    return out, order, keep


@pytest.fixture
def scored_run(ours, owner):
    other = dimension_create(project=ours.project, name="Honesty", pairs=[("Be honest.", "Be dishonest.")], created_by=owner)
    ours.run.dimensions.add(other)
    Run.objects.filter(pk=ours.run.pk).update(keep_fraction=0.3)
    rng = random.Random(7)
    dims = [str(ours.dimension.pk), str(other.pk)]
    rows = []
    for i in range(60):
        value = round(rng.uniform(-1, 1), 2) if i % 7 else 0.5  # some ties
        rows.append({"index": i * 2, "scores": {dims[0]: value, dims[1]: round(rng.uniform(-1, 1), 3)}})
    Instruction.objects.bulk_create(Instruction(run=ours.run, index=r["index"], text=f"I{r['index']}", source="uploaded",
                                                scores=r["scores"]) for r in rows)
    Instruction.objects.create(run=ours.run, index=999, text="never scored", source="uploaded")
    stage = ours.run.stages.get(kind="filter")
    Stage.objects.filter(pk=stage.pk).update(status=Stage.Status.SUCCEEDED)
    stage.refresh_from_db()
    return ours.run, stage, rows


def test_finalisation_ranks_the_pool_as_the_row_by_row_version_did(scored_run):
    run, stage, rows = scored_run
    filter_finalize(stage)
    expected, order, keep = _by_hand(rows, 0.3)
    got = {i.index: i for i in Instruction.objects.filter(run=run, consistency__isnull=False)}
    assert set(got) == set(expected)
    for index, (consistency, winner) in expected.items():
        assert got[index].consistency == pytest.approx(consistency, abs=1e-12) and got[index].winner_id == winner
    assert [i for i in order if got[i].kept] == order[:keep]
    assert [got[i].rank for i in order] == list(range(len(order)))  # every scored row carries its place
    assert Instruction.objects.get(run=run, index=999).rank is None
    stage.refresh_from_db()
    assert stage.metrics["kept"] == keep and stage.metrics["threshold"] == pytest.approx(expected[order[keep - 1]][0])
    stored = FilterScores.objects.get(stage=stage).array()
    assert np.allclose(stored, sorted(c for c, _ in expected.values()))


def test_a_threshold_keeps_the_prefix_of_the_order_and_the_preview_counts_it_without_reading_rows(scored_run, owner):
    run, stage, rows = scored_run
    filter_finalize(stage)
    expected, order, _ = _by_hand(rows, 0.3)
    threshold = sorted(c for c, _ in expected.values())[-25]
    with CaptureQueriesContext(connection) as queries:
        panel = filter_panel(run=Run.objects.get(pk=run.pk), threshold=threshold)
    assert panel.preview_kept == sum(1 for c, _ in expected.values() if c >= threshold) == 25
    assert panel.scored == 60 and sum(b.count for b in panel.bins) == 60 and sum(b.kept for b in panel.bins) == 25
    # No query reads every instruction: the scores come from the stored array, the examples by LIMIT.
    unbounded = [q["sql"] for q in queries.captured_queries if '"jobs_instruction"' in q["sql"] and "LIMIT" not in q["sql"]
                 and "COUNT" not in q["sql"].upper()]
    assert not unbounded, unbounded

    result = filter_threshold_apply(run=run, threshold=threshold)
    assert result["kept"] == 25
    kept = list(Instruction.objects.filter(run=run, kept=True).order_by("rank").values_list("index", "rank"))
    assert kept == [(i, r) for r, i in enumerate(order[:25])]


def test_a_run_ranked_before_the_scores_were_stored_is_ranked_once_when_its_threshold_moves(scored_run):
    run, stage, rows = scored_run
    filter_finalize(stage)
    FilterScores.objects.filter(stage=stage).delete()
    Instruction.objects.filter(run=run, kept=False).update(rank=None)  # how older runs were stored
    expected, order, _ = _by_hand(rows, 0.3)
    assert filter_panel(run=run, threshold=0.0).scored == 60  # the preview still reads, from the rows
    threshold = sorted(c for c, _ in expected.values())[-10]
    assert filter_threshold_apply(run=run, threshold=threshold)["kept"] == 10
    assert FilterScores.objects.filter(stage=stage).exists()
    assert list(Instruction.objects.filter(run=run, kept=True).order_by("rank").values_list("index", flat=True)) == order[:10]
