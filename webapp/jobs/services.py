"""Running a run: stages advance in order, each stage's work is split into chunks.

Every transition is a conditional UPDATE on the row's current status, so two workers, a
redelivered message and the periodic check can race without doing anything twice. Workers
call these functions; so do views (retry, resume) and the periodic check.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

from django.conf import settings
from django.db import transaction
import numpy as np
from django.db.models import Case, F, Sum, Value, When
from django.utils import timezone

from webapp.jobs import events, queue
from webapp.jobs.models import Chunk, FilterScores, Instruction
from webapp.studio.models import Run, Stage

log = logging.getLogger(__name__)

ACTIVE_RUN = (Run.Status.QUEUED, Run.Status.RUNNING)
MAX_ATTEMPTS = 3
PERCENT_STAGES = (Stage.Kind.TRAIN, Stage.Kind.EVALUATE)  # one chunk; progress reported in percent


def _now() -> dt.datetime:
    return timezone.now()


def _chunk_size(kind: str) -> int:
    return {
        Stage.Kind.SYNTHESIZE: settings.ICON2_SYNTH_CHUNK,
        Stage.Kind.FILTER: settings.ICON2_SCORE_CHUNK,
        Stage.Kind.GENERATE: settings.ICON2_PAIR_CHUNK,
    }.get(kind, 0)


def _work_items(stage: Stage) -> int:
    run = stage.run
    if stage.kind == Stage.Kind.EXTRACT:
        return run.dimensions.count()
    if stage.kind == Stage.Kind.SYNTHESIZE:
        return run.n_instructions
    if stage.kind == Stage.Kind.FILTER:
        if run.instruction_source == Run.InstructionSource.UPLOAD and not run.instructions.exists():
            instructions_import_upload(run=run)
        # Score chunks are ranges of the instructions' index (a synthesised pool may have gaps
        # where duplicates were dropped), so each reads its rows by an indexed range.
        last = run.instructions.order_by("-index").values_list("index", flat=True).first()
        return 0 if last is None else last + 1
    if stage.kind == Stage.Kind.CALIBRATE:
        return 1
    if stage.kind in PERCENT_STAGES:
        return 100
    if stage.kind == Stage.Kind.GENERATE:
        return run.instructions.filter(kept=True).count()
    return 0


IMPORT_BATCH = 5000


def instructions_import_upload(*, run: Run) -> int:
    """Store an uploaded list as the run's instructions (once), streamed from the file into the
    database in batches: a million-line file is never held in memory whole."""
    from itertools import islice

    from webapp.studio.instructions import EMPTY_FILE, instructions_iter

    if not run.instructions_file:
        raise ValueError("the run has no uploaded instruction file; create a new run with one")
    count = 0
    run.instructions_file.open("rb")
    try:
        texts = instructions_iter(name=run.instructions_file.name, stream=run.instructions_file)
        while batch := list(islice(texts, IMPORT_BATCH)):
            Instruction.objects.bulk_create(
                [Instruction(run=run, index=count + i, text=t, source=Instruction.Source.UPLOADED) for i, t in enumerate(batch)],
                ignore_conflicts=True,
            )
            count += len(batch)
    finally:
        run.instructions_file.close()
    if not count:
        raise ValueError(EMPTY_FILE)
    return count


def _stage_notify(stage_id: int) -> None:
    stage = Stage.objects.get(pk=stage_id)
    events.notify(stage.run_id, events.stage_event(stage))


def _run_notify(run_id: int) -> None:
    status = Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
    events.notify(run_id, {"type": "run", "run": run_id, "status": status})


def run_start(*, run_id: int) -> Stage | None:
    """Begin (or continue) a queued run: start its next stage. Called once the launch commits."""
    return run_advance(run_id=run_id)


def run_advance(*, run_id: int) -> Stage | None:
    """Start the next stage that is waiting, or finish the run. Idempotent."""
    to_send: list[tuple[int, str]] = []
    started: Stage | None = None
    skipped: list[int] = []
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.status not in (*ACTIVE_RUN, Run.Status.PAUSED):
            return None
        stages = list(run.stages.order_by("order"))
        if any(s.status == Stage.Status.RUNNING for s in stages) or Chunk.objects.filter(
            stage__run=run, status__in=[Chunk.Status.QUEUED, Chunk.Status.RUNNING]
        ).exists():
            return None  # still working
        for stage in stages:
            if stage.status not in (Stage.Status.PENDING, Stage.Status.QUEUED):
                continue
            if stage.kind == Stage.Kind.REVIEW:
                Stage.objects.filter(pk=stage.pk).update(
                    status=Stage.Status.RUNNING, started_at=_now(), message="Waiting for annotators to review the pairs."
                )
                Run.objects.filter(pk=run.pk).update(status=Run.Status.PAUSED)
                started = stage
                break
            try:
                total = _work_items(stage)
            except Exception as exc:  # e.g. an uploaded file that went missing
                Stage.objects.filter(pk=stage.pk).update(
                    status=Stage.Status.FAILED, finished_at=_now(), error=f"Could not prepare this stage: {exc}"
                )
                Run.objects.filter(pk=run.pk).update(status=Run.Status.FAILED)
                started = stage
                break
            if total == 0:
                Stage.objects.filter(pk=stage.pk).update(
                    status=Stage.Status.FAILED, finished_at=_now(),
                    error=f"Nothing to do: the {stage.get_kind_display().lower()} stage has no work items "
                    "(no instructions were kept, or none were given). Lower the threshold or add instructions.",
                )
                Run.objects.filter(pk=run.pk).update(status=Run.Status.FAILED)
                started = stage
                break
            size = _chunk_size(stage.kind) or total
            now = _now()
            chunks = Chunk.objects.bulk_create(
                [
                    Chunk(stage=stage, index=i, start=start, stop=min(start + size, total), enqueued_at=now)
                    for i, start in enumerate(range(0, total, size))
                ]
            )
            Stage.objects.filter(pk=stage.pk).update(status=Stage.Status.QUEUED, progress_total=total, progress_done=0)
            Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
            to_send = [(c.pk, "gpu") for c in Chunk.objects.filter(stage=stage).order_by("index")]
            started = stage
            break
        else:
            Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED)
        transaction.on_commit(lambda: [queue.send_chunk(cid, queue=q) for cid, q in to_send])
    for stage_id in skipped:
        _stage_notify(stage_id)
    if started is not None:
        _stage_notify(started.pk)
    _run_notify(run_id)
    return started


def chunk_claim(*, chunk_id: int, worker: str) -> Chunk | None:
    """Take a queued chunk. Returns None when someone else has it or its run stopped."""
    now = _now()
    claimed = Chunk.objects.filter(pk=chunk_id, status=Chunk.Status.QUEUED).update(
        status=Chunk.Status.RUNNING, worker=worker, started_at=now, heartbeat_at=now,
        attempts=F("attempts") + 1, progress_done=0, error="",
    )
    if not claimed:
        return None
    chunk = Chunk.objects.select_related("stage__run__model", "stage__run__project").get(pk=chunk_id)
    stage, run = chunk.stage, chunk.stage.run
    if run.status not in ACTIVE_RUN or stage.status not in (Stage.Status.QUEUED, Stage.Status.RUNNING):
        Chunk.objects.filter(pk=chunk_id, status=Chunk.Status.RUNNING).update(status=Chunk.Status.CANCELLED, finished_at=now)
        return None
    if Stage.objects.filter(pk=stage.pk, status=Stage.Status.QUEUED).update(
        status=Stage.Status.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, error=""
    ):
        _stage_notify(stage.pk)
    Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(status=Run.Status.RUNNING)
    return chunk


def _mine(chunk: Chunk):
    return Chunk.objects.filter(pk=chunk.pk, status=Chunk.Status.RUNNING, worker=chunk.worker, attempts=chunk.attempts)


def chunk_progress(*, chunk: Chunk, done: int, message: str = "", metrics: dict | None = None) -> bool:
    """Record progress and a heartbeat. Returns True when the run was cancelled (stop now)."""
    now = _now()
    _mine(chunk).update(progress_done=done, heartbeat_at=now)
    total_done = Chunk.objects.filter(stage_id=chunk.stage_id).aggregate(s=Sum("progress_done"))["s"] or 0
    fields = {"progress_done": total_done, "heartbeat_at": now}
    if message:
        fields["message"] = message[:300]
    if metrics:
        stage = Stage.objects.get(pk=chunk.stage_id)
        fields["metrics"] = {**stage.metrics, **metrics}
    Stage.objects.filter(pk=chunk.stage_id, status=Stage.Status.RUNNING).update(**fields)
    _stage_notify(chunk.stage_id)
    return run_is_cancelled(run_id=chunk.stage.run_id)


def chunk_heartbeat(*, chunk: Chunk) -> bool:
    """Only the heartbeat (from the worker's background thread). Returns True if cancelled."""
    now = _now()
    _mine(chunk).update(heartbeat_at=now)
    Stage.objects.filter(pk=chunk.stage_id, status=Stage.Status.RUNNING).update(heartbeat_at=now)
    return run_is_cancelled(run_id=chunk.stage.run_id)


def run_is_cancelled(*, run_id: int) -> bool:
    return Run.objects.filter(pk=run_id, status=Run.Status.CANCELLED).exists()


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
    n = len(pks)
    order = np.lexsort((index, -consistency))  # most consistent first; the index breaks ties
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    if keep is None:
        keep = max(1, round(n * keep_fraction)) if n else 0
    _instructions_rank_write(pks, {**(extra or {}), "kept": (rank < keep).tolist(), "rank": rank.tolist()})
    FilterScores.objects.update_or_create(
        stage=stage, defaults={"count": n, "values": np.sort(consistency).astype(np.float64).tobytes()}
    )
    threshold = float(consistency[order[keep - 1]]) if keep else None
    return keep, threshold


def _finalize_filter(stage: Stage) -> None:
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
    centred = matrix - matrix.mean(axis=0) if len(raw) else matrix
    best = centred.argmax(axis=1) if len(raw) else np.zeros(0, dtype=np.int64)  # the first of equal dimensions, as before
    consistency = centred[np.arange(len(raw)), best] if len(raw) else np.zeros(0)
    winners = [int(d) for d in dims]
    keep, threshold = _filter_order_store(
        stage, pks, consistency, np.asarray(index, dtype=np.int64), keep_fraction=run.keep_fraction,
        extra={"consistency": consistency.tolist(), "winner": [winners[b] for b in best.tolist()]},
    )
    Stage.objects.filter(pk=stage.pk).update(
        metrics={**stage.metrics, "kept": keep, "scored": len(pks), "method": "centred", "threshold": threshold}
    )


FINALIZE: dict[str, Callable[[Stage], None]] = {Stage.Kind.FILTER: _finalize_filter}


def chunk_complete(*, chunk: Chunk, write: Callable[[], None], compute: dict) -> bool:
    """Write a chunk's results and mark it done, in one transaction.

    Returns False (and writes nothing) when the chunk is no longer this worker's, e.g. the
    periodic check re-queued it after missing heartbeats and another worker took it.
    """
    with transaction.atomic():
        if not _mine(chunk).update(
            status=Chunk.Status.SUCCEEDED, finished_at=_now(), compute=compute, progress_done=chunk.size
        ):
            return False
        write()
    _stage_maybe_finish(stage_id=chunk.stage_id)
    return True


def _stage_maybe_finish(*, stage_id: int) -> None:
    unfinished = [Chunk.Status.QUEUED, Chunk.Status.RUNNING, Chunk.Status.FAILED, Chunk.Status.CANCELLED]
    if Chunk.objects.filter(stage_id=stage_id, status__in=unfinished).exists():
        return  # one indexed look, not every chunk of the stage, after each of its chunks
    with transaction.atomic():
        chunks = list(Chunk.objects.filter(stage_id=stage_id))
        if any(c.status != Chunk.Status.SUCCEEDED for c in chunks):
            return
        compute: dict = {"wall_s": 0.0, "tokens_in": 0, "tokens_out": 0, "device": ""}
        for c in chunks:
            for key in ("wall_s", "tokens_in", "tokens_out"):
                compute[key] += c.compute.get(key, 0)
            compute["device"] = c.compute.get("device", compute["device"])
        compute["wall_s"] = round(compute["wall_s"], 3)
        if any("attempts" in c.compute for c in chunks):  # synthesis: how many samples it took
            compute["attempts"] = sum(c.compute.get("attempts", 0) for c in chunks)
            compute["kept"] = sum(c.compute.get("kept", 0) for c in chunks)
            compute["acceptance_rate"] = round(compute["kept"] / compute["attempts"], 4) if compute["attempts"] else 0.0
            dropped: dict[str, int] = {}
            for c in chunks:
                for reason, n in c.compute.get("dropped", {}).items():
                    dropped[reason] = dropped.get(reason, 0) + n
            compute["dropped"] = dropped
        estimates = [c.compute["sample_and_rank"] for c in chunks if c.compute.get("sample_and_rank")]
        if estimates:  # generation: the sample-and-rank estimate adds up over chunks
            merged = dict(estimates[0])
            for e in estimates[1:]:
                for key, value in e.items():
                    if key != "samples" and isinstance(value, (int, float)):
                        merged[key] = merged.get(key, 0) + value
            compute["sample_and_rank"] = merged
        compute["chunks"] = len(chunks)
        compute["workers"] = sorted({c.worker for c in chunks})
        stage = Stage.objects.select_related("run").get(pk=stage_id)
        message = ""
        gates = [c.compute["gate"] for c in chunks if c.compute.get("gate")]
        if gates:  # generation: the pair gate's counts add up over chunks
            compute["gate"] = gate = _gate_merge(gates)
            if gate["kept"] == 0:
                error = _gate_empty_error(gate, stage.run)
                Chunk.objects.filter(stage_id=stage_id).update(status=Chunk.Status.FAILED, error=error)
                Stage.objects.filter(pk=stage_id, status=Stage.Status.RUNNING).update(
                    status=Stage.Status.FAILED, finished_at=_now(), compute=compute, error=error, message=gate_message(gate)
                )
                Run.objects.filter(pk=stage.run_id, status__in=ACTIVE_RUN).update(status=Run.Status.FAILED)
                transaction.on_commit(lambda: (_stage_notify(stage_id), _run_notify(stage.run_id)))
                return
            message = gate_message(gate)
        if not Stage.objects.filter(pk=stage_id, status=Stage.Status.RUNNING).update(
            status=Stage.Status.SUCCEEDED, finished_at=_now(), compute=compute, progress_done=F("progress_total"),
            message=message,
        ):
            return
        if stage.kind in FINALIZE:
            FINALIZE[stage.kind](stage)
        run_id = stage.run_id
        if stage.kind == Stage.Kind.GENERATE:
            from webapp.jobs.audits import audit_after_generation

            audit_after_generation(run_id=run_id)
    _stage_notify(stage_id)
    run_advance(run_id=run_id)


def _gate_merge(gates: list[dict]) -> dict:
    dropped: dict[str, int] = {}
    for g in gates:
        for reason, n in g.get("dropped", {}).items():
            dropped[reason] = dropped.get(reason, 0) + n
    return {
        "kept": sum(g.get("kept", 0) for g in gates), "dropped": dropped, "retries": sum(g.get("retries", 0) for g in gates),
        "examples": [e for g in gates for e in g.get("examples", [])][:3],
    }


def gate_message(gate: dict) -> str:
    """'30 pairs kept, 2 dropped (rejected: repetition 2); 5 sides regenerated at a smaller |γ|'."""
    kept, dropped, retries = gate["kept"], gate.get("dropped", {}), gate.get("retries", 0)
    text = f"{kept} pair{'s' if kept != 1 else ''} kept"
    if dropped:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0])))
        text += f", {sum(dropped.values())} dropped ({reasons})"
    if retries:
        text += f"; {retries} side{'s' if retries != 1 else ''} regenerated at a smaller |γ|"
    return text


def _gate_empty_error(gate: dict, run: Run) -> str:
    dropped = gate.get("dropped", {})
    total = sum(dropped.values())
    identical = dropped.get("identical sides", 0)
    if total and identical >= total / 2:
        advice = (
            f"γ⁺ = {run.gamma_plus:g} and γ⁻ = {run.gamma_minus:g} are too weak for the two sides to differ: "
            "start a run with a larger |γ| (on the embedded model γ⁺ = 0.08, γ⁻ = −0.03 work)"
        )
    else:
        advice = (
            f"even after retries at a smaller |γ| every pair still had a degenerate side: start a run with a smaller "
            f"|γ| (try γ⁺ = {run.gamma_plus / 2:.3g}, γ⁻ = {run.gamma_minus / 2:.3g}), the no-repeat safeguard on, "
            "or the clamp steering rule"
        )
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(dropped.items(), key=lambda kv: -kv[1])) or "none generated"
    return f"No pair passed the quality gate ({total} dropped: {reasons}). {advice}."


def chunk_fail(*, chunk: Chunk, error: str, cancelled: bool = False) -> None:
    """A chunk stopped: on cancel the stage is cancelled; on error the stage and run fail (retryable)."""
    status = Chunk.Status.CANCELLED if cancelled else Chunk.Status.FAILED
    with transaction.atomic():
        if not _mine(chunk).update(status=status, finished_at=_now(), error=error[:2000]):
            return
        if cancelled:
            Stage.objects.filter(pk=chunk.stage_id, status__in=[Stage.Status.QUEUED, Stage.Status.RUNNING]).update(
                status=Stage.Status.CANCELLED, finished_at=_now(), message="Cancelled."
            )
        else:
            Stage.objects.filter(pk=chunk.stage_id).exclude(status=Stage.Status.SUCCEEDED).update(
                status=Stage.Status.FAILED, finished_at=_now(), error=error[:2000]
            )
            Run.objects.filter(pk=chunk.stage.run_id, status__in=ACTIVE_RUN).update(status=Run.Status.FAILED)
        Chunk.objects.filter(stage_id=chunk.stage_id, status=Chunk.Status.QUEUED).update(status=Chunk.Status.CANCELLED)
    _stage_notify(chunk.stage_id)
    _run_notify(chunk.stage.run_id)


def stage_retry(*, stage: Stage) -> Stage:
    """Run a failed stage again: finished chunks are kept, the others re-queued, and the later
    stages its failure cancelled become pending. A cancelled run stays cancelled."""
    from django.core.exceptions import ValidationError

    to_send: list[int] = []
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=stage.run_id)
        stage.refresh_from_db(fields=["status"])
        if run.status == Run.Status.CANCELLED:
            raise ValidationError("This run was cancelled; it cannot be retried. Start a new run instead.")
        if stage.status != Stage.Status.FAILED:
            raise ValidationError("Only a failed stage can be retried.")
        now = _now()
        has_chunks = stage.chunks.exists()
        stage.chunks.exclude(status=Chunk.Status.SUCCEEDED).update(status=Chunk.Status.QUEUED, enqueued_at=now, error="")
        Stage.objects.filter(pk=stage.pk).update(
            status=Stage.Status.QUEUED if has_chunks else Stage.Status.PENDING, error="", finished_at=None, message=""
        )
        run.stages.filter(order__gt=stage.order, status=Stage.Status.CANCELLED).update(status=Stage.Status.PENDING)
        Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING if has_chunks else Run.Status.QUEUED)
        to_send = list(stage.chunks.filter(status=Chunk.Status.QUEUED).values_list("pk", flat=True))
        transaction.on_commit(lambda: [queue.send_chunk(cid) for cid in to_send])
    if not has_chunks:
        run_advance(run_id=stage.run_id)
    _stage_notify(stage.pk)
    _run_notify(stage.run_id)
    stage.refresh_from_db()
    return stage


def review_finish(*, run: Run) -> None:
    """The review gate is passed: training may start, on the gated dataset only (pairs whose
    resolved verdict confirms an order, swaps flipped), which is written to disk here and
    described in the review stage's metrics."""
    from webapp.review.services import review_dataset_write

    if not run.stages.filter(kind=Stage.Kind.REVIEW, status=Stage.Status.RUNNING).exists():
        return
    gate = review_dataset_write(run=run)
    updated = run.stages.filter(kind=Stage.Kind.REVIEW, status=Stage.Status.RUNNING).update(
        status=Stage.Status.SUCCEEDED, finished_at=_now(), metrics=gate,
        message=f"{gate['kept']} of {gate['total']} pairs passed review.",
    )
    if updated:
        Run.objects.filter(pk=run.pk, status=Run.Status.PAUSED).update(status=Run.Status.RUNNING)
        run_advance(run_id=run.pk)


def chunks_reap(*, stale_after_s: float | None = None, resend_after_s: float | None = None) -> dict[str, int]:
    """The periodic check. A running chunk whose worker stopped sending heartbeats is re-queued
    (or failed after MAX_ATTEMPTS, with an explanation); a queued chunk whose message may have
    been lost (Redis restarted) is sent again. Duplicate messages are harmless (conditional claim)."""
    stale_after_s = stale_after_s if stale_after_s is not None else settings.ICON2_STALE_AFTER_S
    resend_after_s = resend_after_s if resend_after_s is not None else settings.ICON2_RESEND_AFTER_S
    now = _now()
    requeued = failed = resent = 0
    for chunk in Chunk.objects.filter(
        status=Chunk.Status.RUNNING, heartbeat_at__lt=now - dt.timedelta(seconds=stale_after_s)
    ).select_related("stage"):
        note = f"worker {chunk.worker or '?'} stopped responding (no heartbeat for {int(stale_after_s)} s)"
        if chunk.attempts >= MAX_ATTEMPTS:
            chunk_fail(chunk=chunk, error=f"{note}, {chunk.attempts} times; retry the stage from the run page")
            failed += 1
        elif Chunk.objects.filter(pk=chunk.pk, status=Chunk.Status.RUNNING, attempts=chunk.attempts).update(
            status=Chunk.Status.QUEUED, enqueued_at=now, error=f"re-queued: {note}", worker=""
        ):
            Stage.objects.filter(pk=chunk.stage_id).update(message=f"Re-queued chunk {chunk.index}: {note}.")
            queue.send_chunk(chunk.pk)
            _stage_notify(chunk.stage_id)
            requeued += 1
    lost = Chunk.objects.filter(
        status=Chunk.Status.QUEUED,
        enqueued_at__lt=now - dt.timedelta(seconds=resend_after_s),
        stage__run__status__in=ACTIVE_RUN,
    )
    # Chunks waiting behind busy workers are queued too: only when the broker holds nothing
    # (Redis restarted empty, or a send failed) are their messages really gone.
    if lost.exists() and queue.broker_backlog("gpu") != 0:
        lost = lost.none()
    for chunk in lost:
        if Chunk.objects.filter(pk=chunk.pk, status=Chunk.Status.QUEUED, enqueued_at=chunk.enqueued_at).update(enqueued_at=now):
            queue.send_chunk(chunk.pk)
            resent += 1
    return {"requeued": requeued, "failed": failed, "resent": resent}


def _remove_run_dir(path: str) -> None:
    """Delete a folder the worker wrote for a run (only ever under MEDIA_ROOT)."""
    import shutil
    from pathlib import Path

    root, target = Path(settings.MEDIA_ROOT).resolve(), Path(path).resolve()
    if root in target.parents:
        shutil.rmtree(target, ignore_errors=True)


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
        Stage.objects.filter(pk=stage.pk).update(metrics={
            **stage.metrics, "kept": kept, "threshold": float(threshold), "threshold_set_by": "hand",
        })
        Run.objects.filter(pk=run.pk).update(keep_fraction=round(kept / scores.size, 6))
        rerun = stages_after_reset(run=run, order=stage.order)
    if rerun and run.status != Run.Status.DRAFT:
        run_advance(run_id=run.pk)
    _run_notify(run.pk)
    return {"kept": kept, "scored": int(scores.size), "threshold": float(threshold), "regenerating": rerun}


def reviewed_work_refuse(*, run: Run, because: str, instead: str) -> None:
    """Refuse (ValidationError) a change that would drop annotators' verdicts, edits or resolutions."""
    from django.core.exceptions import ValidationError

    from webapp.review.models import PairEdit, Resolution, Verdict

    if (
        Verdict.objects.filter(assignment__pair__run=run, voided_at__isnull=True).exists()
        or PairEdit.objects.filter(pair__run=run).exists()
        or Resolution.objects.filter(pair__run=run).exists()
    ):
        raise ValidationError(f"Annotators have already reviewed or edited this run's pairs, and {because}. {instead}")


def stages_after_reset(*, run: Run, order: int) -> bool:
    """Inside the caller's transaction (run row locked): drop the pairs and make every stage after
    ``order`` pending again, the run queued unless it is a draft. True if anything was reset; the
    caller advances the run after its commit."""
    later = run.stages.filter(order__gt=order).exclude(status__in=[Stage.Status.PENDING, Stage.Status.SKIPPED])
    if not (later.exists() or run.pairs.exists()):
        return False
    # A retried training stage resumes from its checkpoints; new pairs must start afresh.
    stale = [s.metrics.get("output_dir") for s in later if s.kind == Stage.Kind.TRAIN and s.metrics.get("output_dir")]
    transaction.on_commit(lambda: [_remove_run_dir(path) for path in stale])
    run.pairs.all().delete()
    Chunk.objects.filter(stage__run=run, stage__order__gt=order).delete()
    later.update(status=Stage.Status.PENDING, progress_done=0, progress_total=0, message="", metrics={},
                 compute={}, error="", started_at=None, finished_at=None, heartbeat_at=None)
    if run.status != Run.Status.DRAFT:
        Run.objects.filter(pk=run.pk).update(status=Run.Status.QUEUED)
    return True


def _filter_scores_ensure(stage: Stage):
    """The filter's sorted scores; a run ranked before they were stored is ranked again from its
    rows (consistency order on every scored row), once."""
    from webapp.jobs.selectors import filter_scores_sorted

    if FilterScores.objects.filter(stage=stage).exists():
        return filter_scores_sorted(stage=stage)
    rows = np.array(list(stage.run.instructions.filter(consistency__isnull=False)
                         .values_list("pk", "index", "consistency").iterator(chunk_size=WRITE_BATCH)), dtype=np.float64)
    if not rows.size:
        return np.zeros(0)
    kept = stage.run.instructions.filter(kept=True).count()
    _filter_order_store(stage, rows[:, 0].astype(np.int64), rows[:, 2], rows[:, 1].astype(np.int64), keep=kept)
    return np.sort(rows[:, 2])
