"""The consistency filter's database side: rank a scored pool once its chunks are in, and move
the threshold afterwards from the stored scores (no model call).

The ranking itself is the engine's torch-free :func:`icon2engine.formats.centred_top_k`, so the
studio and ``icon2 filter`` keep the same instructions; here it works on numpy arrays read in
one pass and writes back in batches, never a model object per row.
"""
from __future__ import annotations

import numpy as np
from django.db import transaction
from django.db.models import Case, Value, When

from icon2engine.formats import centred_top_k, top_k
from webapp.jobs import hooks
from webapp.jobs.models import FilterScores, Instruction
from webapp.jobs.selectors import filter_scores_sorted
from webapp.jobs.services import ACTIVE_RUN, reviewed_work_refuse, run_advance, run_notify, stage_metrics_merge, stages_after_reset
from webapp.studio.models import Run, Stage


WRITE_BATCH = 20000


def _instructions_rank_write(pks, columns: dict[str, list]) -> None:
    """Set the given fields of many instructions by primary key, in batches: one UPDATE joined to
    arrays per batch on PostgreSQL, an executemany elsewhere. (``bulk_update`` builds one CASE
    per field per row, which does not scale to a million rows.)"""
    from django.db import connection

    meta = Instruction._meta
    table = connection.ops.quote_name(meta.db_table)
    names = list(columns)
    cols = [connection.ops.quote_name(meta.get_field(n).column) for n in names]
    pk_col = connection.ops.quote_name(meta.pk.column)
    pg_types = {"consistency": "float8", "winner": "bigint", "kept": "boolean", "rank": "integer"}
    with connection.cursor() as cursor:
        for start in range(0, len(pks), WRITE_BATCH):
            ids = [int(x) for x in pks[start : start + WRITE_BATCH]]
            values = [columns[n][start : start + WRITE_BATCH] for n in names]
            if connection.vendor == "postgresql":
                sets = ", ".join(f"{c} = v.c{i}" for i, c in enumerate(cols))
                arrays = ", ".join(f"%s::{pg_types[n]}[]" for n in names)
                alias = ", ".join(f"c{i}" for i in range(len(cols)))
                cursor.execute(
                    f"UPDATE {table} SET {sets} FROM unnest(%s::bigint[], {arrays}) AS v(id, {alias}) WHERE {table}.{pk_col} = v.id",
                    [ids, *values],
                )
            else:
                sets = ", ".join(f"{c} = %s" for c in cols)
                cursor.executemany(f"UPDATE {table} SET {sets} WHERE {pk_col} = %s", list(zip(*values, ids)))


def _filter_order_store(stage: Stage, pks, consistency, index, keep_fraction: float | None = None, keep: int | None = None,
                        extra: dict[str, list] | None = None):
    """Rank scored instructions by (−consistency, index), keep the first ``keep`` (or the top
    ``keep_fraction``), write consistency order and kept flags (with ``extra`` columns, in the
    same pass), and store the sorted scores for the threshold preview. Returns (kept, threshold)."""
    ranked = top_k(consistency, index, keep=keep, keep_fraction=keep_fraction)
    _instructions_rank_write(pks, {**(extra or {}), "kept": ranked["kept"].tolist(), "rank": ranked["rank"].tolist()})
    FilterScores.objects.update_or_create(
        stage=stage, defaults={"count": len(pks), "values": np.sort(consistency).astype(np.float64).tobytes()}
    )
    return ranked["keep"], ranked["threshold"]


@hooks.on_stage_finish(Stage.Kind.FILTER)
def filter_finalize(stage: Stage) -> None:
    """Rank the whole pool once every chunk has scored its slice; keep the top fraction.

    Chunks store the paper's raw score per dimension. The default (centred) score subtracts,
    per dimension, the pool's mean raw score, so a dimension whose direction has a large
    offset does not win every instruction; with one dimension both rank the same. Works on
    numpy arrays read in one pass, never a model object per row.
    """
    run = stage.run
    pks, index, raw = [], [], []
    for pk, i, scores in run.instructions.order_by("index").values_list("pk", "index", "scores").iterator(chunk_size=WRITE_BATCH):
        if scores:
            pks.append(pk)
            index.append(i)
            raw.append(scores)
    dims = sorted({d for r in raw for d in r})
    matrix = np.array([[r[d] for d in dims] for r in raw], dtype=np.float64).reshape(len(raw), len(dims))
    ranked = centred_top_k(matrix, np.asarray(index, dtype=np.int64), keep_fraction=run.keep_fraction)
    winners = [int(d) for d in dims]
    consistency = ranked["consistency"]
    keep, threshold = _filter_order_store(
        stage, pks, consistency, np.asarray(index, dtype=np.int64), keep_fraction=run.keep_fraction,
        extra={"consistency": consistency.tolist(), "winner": [winners[b] for b in ranked["winner"].tolist()]},
    )
    stage_metrics_merge(stage_id=stage.pk, values={"kept": keep, "scored": len(pks), "method": "centred", "threshold": threshold})
    Run.objects.filter(pk=run.pk).update(keep_fraction_used=None)  # ranked afresh: the requested fraction is kept


def filter_threshold_apply(*, run: Run, threshold: float) -> dict:
    """Keep the instructions whose stored consistency is at least ``threshold``.

    Re-applies the filter from the scores the filter stage stored: no model is called. When
    pairs were already generated from the old selection, they are dropped and the stages after
    the filter run again (calibration, generation, …); pairs that annotators have reviewed are
    never dropped: such a run is refused, and a new run is the way to try another threshold.
    """
    from django.core.exceptions import ValidationError

    if threshold is None or not isinstance(threshold, (int, float)) or threshold != threshold or abs(threshold) == float("inf"):
        raise ValidationError("Give the threshold as a number, e.g. 0.25.")
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.status in ACTIVE_RUN:
            raise ValidationError("The run is working: wait until it pauses or finishes (or cancel it), then move the threshold.")
        stage = run.stages.filter(kind=Stage.Kind.FILTER).first()
        if stage is None or stage.status != Stage.Status.SUCCEEDED:
            raise ValidationError("The filter has not scored this run's instructions yet.")
        reviewed_work_refuse(run=run, because="a new threshold would drop their work",
                             instead="Start a new run with a different keep fraction instead.")
        scores = _filter_scores_ensure(stage)
        if not scores.size:
            raise ValidationError("No instruction was scored.")
        kept = int(scores.size - np.searchsorted(scores, threshold, side="left"))  # consistency ≥ threshold
        if not kept:
            raise ValidationError(
                f"No instruction scores {threshold:.4g} or more (the highest is {scores[-1]:.4g}); lower the threshold."
            )
        # The filter's order is stored on every scored instruction: the kept ones are its first `kept`.
        run.instructions.filter(rank__isnull=False).update(
            kept=Case(When(rank__lt=kept, then=Value(True)), default=Value(False)))
        stage_metrics_merge(stage_id=stage.pk, values={"kept": kept, "threshold": float(threshold), "threshold_set_by": "hand"})
        Run.objects.filter(pk=run.pk).update(keep_fraction_used=round(kept / scores.size, 6))  # the request stays
        rerun = stages_after_reset(run=run, order=stage.order)
    if rerun and run.status != Run.Status.DRAFT:
        run_advance(run_id=run.pk)
    run_notify(run.pk)
    return {"kept": kept, "scored": int(scores.size), "threshold": float(threshold), "regenerating": rerun}


def _filter_scores_ensure(stage: Stage):
    """The filter's sorted scores; a run ranked before they were stored is ranked again from its
    rows (consistency order on every scored row), once."""
    if FilterScores.objects.filter(stage=stage).exists():
        return filter_scores_sorted(stage=stage)
    rows = np.array(list(stage.run.instructions.filter(consistency__isnull=False)
                         .values_list("pk", "index", "consistency").iterator(chunk_size=WRITE_BATCH)), dtype=np.float64)
    if not rows.size:
        return np.zeros(0)
    kept = stage.run.instructions.filter(kept=True).count()
    _filter_order_store(stage, rows[:, 0].astype(np.int64), rows[:, 2], rows[:, 1].astype(np.int64), keep=kept)
    return np.sort(rows[:, 2])
