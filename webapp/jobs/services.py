"""Running a run: stages advance in order, each stage's work is split into chunks.

Every transition is a conditional UPDATE on the row's current status, so two workers, a
redelivered message and the periodic check can race without doing anything twice. Workers
call these functions; so do views (retry, resume) and the periodic check. A chunk's claim,
heartbeat and reaping are the lifecycle every job shares (:mod:`webapp.jobs.lifecycle`); what a
stage kind does when it finishes is registered by its own module (:mod:`webapp.jobs.hooks`).
"""
from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path
from typing import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from webapp.jobs import events, hooks, lifecycle, queue
from webapp.jobs.models import Chunk
from webapp.jobs.stores import instructions_import_upload
from webapp.review.models import PairEdit, Resolution, Verdict
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


def stage_notify(stage_id: int) -> None:
    """Tell the run's open pages about a stage's state (small JSON over the channel layer)."""
    stage = Stage.objects.get(pk=stage_id)
    events.notify(stage.run_id, events.stage_event(stage))


def run_notify(run_id: int) -> None:
    """Tell the run's open pages about the run's status."""
    status = Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
    events.notify(run_id, {"type": "run", "run": run_id, "status": status})


def run_advance(*, run_id: int) -> Stage | None:
    """Start the next stage that is waiting, or finish the run. Idempotent."""
    to_send: list[tuple[int, str]] = []
    started: Stage | None = None
    failed = False
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
                started, failed = stage, True
                break
            if total == 0:
                Stage.objects.filter(pk=stage.pk).update(
                    status=Stage.Status.FAILED, finished_at=_now(),
                    error=f"Nothing to do: the {stage.get_kind_display().lower()} stage has no work items "
                    "(no instructions were kept, or none were given). Lower the threshold or add instructions.",
                )
                Run.objects.filter(pk=run.pk).update(status=Run.Status.FAILED)
                started, failed = stage, True
                break
            size = _chunk_size(stage.kind) or total
            now = _now()
            Chunk.objects.bulk_create(
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
    if failed:
        hooks.run_stopped(run_id=run_id, status=Run.Status.FAILED)
    if started is not None:
        stage_notify(started.pk)
    run_notify(run_id)
    return started


def chunk_claim(*, chunk_id: int, worker: str) -> Chunk | None:
    """Take a queued chunk. Returns None when someone else has it or its run stopped."""
    if not lifecycle.job_claim(Chunk, pk=chunk_id, worker=worker, progress_done=0, error=""):
        return None
    now = _now()
    chunk = Chunk.objects.select_related("stage__run__model", "stage__run__project").get(pk=chunk_id)
    stage, run = chunk.stage, chunk.stage.run
    if run.status not in ACTIVE_RUN or stage.status not in (Stage.Status.QUEUED, Stage.Status.RUNNING):
        lifecycle.job_mine(chunk).update(status=Chunk.Status.CANCELLED, finished_at=now)
        if run.status in (Run.Status.CANCELLED, Run.Status.FAILED):
            hooks.run_stopped(run_id=run.pk, status=run.status)
        return None
    if Stage.objects.filter(pk=stage.pk, status=Stage.Status.QUEUED).update(
        status=Stage.Status.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, error=""
    ):
        stage_notify(stage.pk)
    Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(status=Run.Status.RUNNING)
    return chunk


def chunk_progress(*, chunk: Chunk, done: int, message: str = "", metrics: dict | None = None) -> bool:
    """Record progress and a heartbeat. Returns True when the run was cancelled (stop now)."""
    now = _now()
    lifecycle.job_mine(chunk).update(progress_done=done, heartbeat_at=now)
    total_done = Chunk.objects.filter(stage_id=chunk.stage_id).aggregate(s=Sum("progress_done"))["s"] or 0
    fields = {"progress_done": total_done, "heartbeat_at": now}
    if message:
        fields["message"] = message[:300]
    Stage.objects.filter(pk=chunk.stage_id, status=Stage.Status.RUNNING).update(**fields)
    if metrics:
        stage_metrics_merge(stage_id=chunk.stage_id, values=metrics, only_if_status=Stage.Status.RUNNING)
    stage_notify(chunk.stage_id)
    return run_is_cancelled(run_id=chunk.stage.run_id)


def chunk_heartbeat(*, chunk: Chunk) -> bool:
    """Only the heartbeat (from the worker's background thread). Returns True if cancelled."""
    lifecycle.job_heartbeat(chunk)
    Stage.objects.filter(pk=chunk.stage_id, status=Stage.Status.RUNNING).update(heartbeat_at=_now())
    return run_is_cancelled(run_id=chunk.stage.run_id)


def run_is_cancelled(*, run_id: int) -> bool:
    return Run.objects.filter(pk=run_id, status=Run.Status.CANCELLED).exists()


def chunk_complete(*, chunk: Chunk, write: Callable[[], None], compute: dict) -> bool:
    """Write a chunk's results and mark it done, in one transaction.

    Returns False (and writes nothing) when the chunk is no longer this worker's, e.g. the
    periodic check re-queued it after missing heartbeats and another worker took it.
    """
    with transaction.atomic():
        if not lifecycle.job_mine(chunk).update(
            status=Chunk.Status.SUCCEEDED, finished_at=_now(), compute=compute, progress_done=chunk.size
        ):
            return False
        write()
    _stage_maybe_finish(stage_id=chunk.stage_id)
    return True


def _merge_synthesis(parts: list[dict], compute: dict) -> None:
    """Synthesis: how many samples it took, and why the others were dropped."""
    compute["attempts"] = sum(p.get("attempts", 0) for p in parts)
    compute["kept"] = sum(p.get("kept", 0) for p in parts)
    compute["acceptance_rate"] = round(compute["kept"] / compute["attempts"], 4) if compute["attempts"] else 0.0
    dropped: dict[str, int] = {}
    for p in parts:
        for reason, n in p.get("dropped", {}).items():
            dropped[reason] = dropped.get(reason, 0) + n
    compute["dropped"] = dropped


def _merge_generate(parts: list[dict], compute: dict) -> None:
    """Generation: the sample-and-rank estimate and the pair gate's counts add up over chunks."""
    from icon2engine.cost import merge_estimates

    estimates = [p["sample_and_rank"] for p in parts if p.get("sample_and_rank")]
    if estimates:
        compute["sample_and_rank"] = merge_estimates(estimates)
    gates = [p["gate"] for p in parts if p.get("gate")]
    if gates:
        compute["gate"] = _gate_merge(gates)


# How each stage kind merges its chunks' compute, after the shared sums (wall time, tokens, device).
COMPUTE_MERGE: dict[str, Callable[[list[dict], dict], None]] = {
    Stage.Kind.SYNTHESIZE: _merge_synthesis,
    Stage.Kind.GENERATE: _merge_generate,
}


def compute_merge(kind: str, parts: list[dict]) -> dict:
    """One stage's compute from its chunks' (small JSON): seconds and tokens summed, the device,
    the chunk count, then whatever the stage kind adds (:data:`COMPUTE_MERGE`)."""
    compute: dict = {"wall_s": 0.0, "tokens_in": 0, "tokens_out": 0, "device": ""}
    for p in parts:
        for key in ("wall_s", "tokens_in", "tokens_out"):
            compute[key] += p.get(key, 0)
        compute["device"] = p.get("device", compute["device"])
    compute["wall_s"] = round(compute["wall_s"], 3)
    compute["chunks"] = len(parts)
    if kind in COMPUTE_MERGE:
        COMPUTE_MERGE[kind](parts, compute)
    return compute


def stage_metrics_merge(*, stage_id: int, values: dict, only_if_status: str | None = None) -> dict | None:
    """Merge ``values`` into a stage's metrics under its row lock: concurrent writers (chunks,
    the filter, a threshold moved by hand) never lose each other's keys. With ``only_if_status``
    nothing is written unless the stage is in that status (None is returned)."""
    with transaction.atomic():
        stage = Stage.objects.select_for_update().filter(pk=stage_id).values("metrics", "status").first()
        if stage is None or (only_if_status is not None and stage["status"] != only_if_status):
            return None
        merged = {**(stage["metrics"] or {}), **values}
        Stage.objects.filter(pk=stage_id).update(metrics=merged)
    return merged


def _stage_maybe_finish(*, stage_id: int) -> None:
    unfinished = [Chunk.Status.QUEUED, Chunk.Status.RUNNING, Chunk.Status.FAILED, Chunk.Status.CANCELLED]
    if Chunk.objects.filter(stage_id=stage_id, status__in=unfinished).exists():
        return  # one indexed look, not every chunk of the stage, after each of its chunks
    with transaction.atomic():
        chunks = list(Chunk.objects.filter(stage_id=stage_id))
        if any(c.status != Chunk.Status.SUCCEEDED for c in chunks):
            return
        stage = Stage.objects.select_related("run").get(pk=stage_id)
        compute = compute_merge(stage.kind, [c.compute for c in chunks])
        compute["workers"] = sorted({c.worker for c in chunks})
        message = ""
        gate = compute.get("gate")
        if gate:  # generation: no pair passed the gate is a failure, not an empty success
            if gate["kept"] == 0:
                error = _gate_empty_error(gate, stage.run)
                Chunk.objects.filter(stage_id=stage_id).update(status=Chunk.Status.FAILED, error=error)
                Stage.objects.filter(pk=stage_id, status=Stage.Status.RUNNING).update(
                    status=Stage.Status.FAILED, finished_at=_now(), compute=compute, error=error, message=gate_message(gate)
                )
                Run.objects.filter(pk=stage.run_id, status__in=ACTIVE_RUN).update(status=Run.Status.FAILED)
                transaction.on_commit(lambda: (stage_notify(stage_id), run_notify(stage.run_id)))
                hooks.run_stopped(run_id=stage.run_id, status=Run.Status.FAILED)
                return
            message = gate_message(gate)
        if not Stage.objects.filter(pk=stage_id, status=Stage.Status.RUNNING).update(
            status=Stage.Status.SUCCEEDED, finished_at=_now(), compute=compute, progress_done=F("progress_total"),
            message=message,
        ):
            return
        hooks.stage_finished(stage)  # e.g. the filter ranks its pool; generation queues the bias audit
        run_id = stage.run_id
    stage_notify(stage_id)
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
    answering = sum(n for r, n in dropped.items() if r.endswith(("off_topic", "refusal", "echo", "circular", "less_relevant")))
    if total and identical >= total / 2:
        plus, minus = (Run._meta.get_field(name).default for name in ("gamma_plus", "gamma_minus"))
        advice = (
            f"γ⁺ = {run.gamma_plus_effective:g} and γ⁻ = {run.gamma_minus_effective:g} are too weak for the two sides to differ: "
            f"start a run with a larger |γ| (the defaults, γ⁺ = {plus:g} and γ⁻ = {minus:g}, work on the embedded model)"
        )
    elif total and answering >= total / 2:
        advice = (
            "the steered sides stopped answering their instructions (off-topic, refusing, or less relevant than the rejected side), even after retries at a "
            f"smaller |γ|: start a run with a smaller |γ| (try γ⁺ = {run.gamma_plus_effective / 2:.3g}, γ⁻ = {run.gamma_minus_effective / 2:.3g}) "
            "or another layer band, or ask for the bias audit and apply its remedy (a direction that carries sentiment "
            "or refusal is orthogonalised against it)"
        )
    else:
        advice = (
            f"even after retries at a smaller |γ| every pair still had a degenerate side: start a run with a smaller "
            f"|γ| (try γ⁺ = {run.gamma_plus_effective / 2:.3g}, γ⁻ = {run.gamma_minus_effective / 2:.3g}), the no-repeat safeguard on, "
            "or the clamp steering rule"
        )
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(dropped.items(), key=lambda kv: -kv[1])) or "none generated"
    return f"No pair passed the quality gate ({total} dropped: {reasons}). {advice}."


def chunk_fail(*, chunk: Chunk, error: str, cancelled: bool = False, metrics: dict | None = None) -> None:
    """A chunk stopped: on cancel the stage is cancelled; on error the stage and run fail (retryable).
    ``metrics`` (e.g. the calibration table that picked nothing) are kept on the stage, in the
    same transaction, so the run page can say why."""
    status = Chunk.Status.CANCELLED if cancelled else Chunk.Status.FAILED
    run_id = chunk.stage.run_id
    with transaction.atomic():
        if not lifecycle.job_mine(chunk).update(status=status, finished_at=_now(), error=error[:2000]):
            return
        if metrics:
            stage_metrics_merge(stage_id=chunk.stage_id, values=metrics)
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
    stopped = Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
    if stopped in (Run.Status.FAILED, Run.Status.CANCELLED):
        hooks.run_stopped(run_id=run_id, status=stopped)
    stage_notify(chunk.stage_id)
    run_notify(run_id)


def stage_retry(*, stage: Stage) -> Stage:
    """Run a failed stage again: finished chunks are kept, the others re-queued, and the later
    stages its failure cancelled become pending. A cancelled run stays cancelled."""
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
    stage_notify(stage.pk)
    run_notify(stage.run_id)
    stage.refresh_from_db()
    return stage


def _chunk_requeue(chunk: Chunk, note: str) -> bool:
    """The periodic check gives a stale chunk back to the queue (another worker takes it)."""
    if not lifecycle.job_mine(chunk).update(status=Chunk.Status.QUEUED, enqueued_at=_now(), error=f"re-queued: {note}", worker=""):
        return False
    Stage.objects.filter(pk=chunk.stage_id).update(message=f"Re-queued chunk {chunk.index}: {note}.")
    queue.send_chunk(chunk.pk)
    stage_notify(chunk.stage_id)
    return True


lifecycle.job_kind_register(lifecycle.JobKind(
    name="chunk", model=Chunk, max_attempts=MAX_ATTEMPTS, requeue=_chunk_requeue,
    fail=lambda chunk, error: chunk_fail(chunk=chunk, error=error), what_next="retry the stage from the run page",
))


def jobs_reap(*, stale_after_s: float | None = None, resend_after_s: float | None = None) -> dict[str, int]:
    """The periodic check. A running job (chunk, playground try, audit) whose worker stopped
    sending heartbeats is re-queued or failed with an explanation, as its kind says
    (:func:`webapp.jobs.lifecycle.stale_jobs_reap`); a queued chunk whose message may have been
    lost (Redis restarted) is sent again. Duplicate messages are harmless (conditional claim)."""
    stale_after_s = stale_after_s if stale_after_s is not None else settings.ICON2_STALE_AFTER_S
    resend_after_s = resend_after_s if resend_after_s is not None else settings.ICON2_RESEND_AFTER_S
    counts = lifecycle.stale_jobs_reap(stale_after_s=stale_after_s)
    now = _now()
    resent = 0
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
    return {**counts, "resent": resent}


def _remove_run_dir(path: str) -> None:
    """Delete a folder the worker wrote for a run (only ever under MEDIA_ROOT)."""
    root, target = Path(settings.MEDIA_ROOT).resolve(), Path(path).resolve()
    if root in target.parents:
        shutil.rmtree(target, ignore_errors=True)


def reviewed_work_refuse(*, run: Run, because: str, instead: str) -> None:
    """Refuse (ValidationError) a change that would drop annotators' verdicts, edits or resolutions."""
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
