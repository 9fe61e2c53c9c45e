"""Writes for review. Every service takes the acting user and checks what only it can check
(that the pair is assigned to them, that a resolution is not stale); role checks happen in the
selectors the views call first."""
from __future__ import annotations

import hashlib
import random
import secrets
from collections import Counter

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from webapp.jobs.models import Pair
from webapp.jobs.services import run_advance
from webapp.limits import NAME_MAX, RATIONALE_MAX, RESPONSE_MAX, text_check
from webapp.review.models import ApiToken, AuditEvent, PairEdit, Resolution, ReviewAssignment, Verdict
from webapp.review.selectors import pair_review_get, reviewer_list, verdict_latest_for_user
from webapp.studio.models import Run, Stage

TOKEN_PREFIX = "icn2_"


def _audit(*, run: Run, actor: AbstractBaseUser | None, action: str, pair: Pair | None = None, **detail) -> None:
    AuditEvent.objects.create(run=run, pair=pair, actor=actor, action=action, detail=detail)


def review_assign_for_visit(*, run: Run, user: AbstractBaseUser) -> int:
    """Top the assignments up when a reviewer opens the queue: only on their first visit to this
    run (or after its pairs were made again), so a queue page costs one indexed look."""
    if ReviewAssignment.objects.filter(run=run, annotator=user).exists():
        return 0
    return review_assign(run=run)


def review_assign(*, run: Run, rng: random.Random | None = None) -> int:
    """Give each pair to `run.review_k` distinct reviewers (fewer if the team has fewer), least
    loaded first, ties broken round-robin by name. Idempotent; returns how many were created."""
    rng = rng or random.Random()
    reviewers = [m.user for m in reviewer_list(run=run)]
    if not reviewers:
        return 0
    with transaction.atomic():
        # Two people opening their queues at once must not both top a pair up to k: lock the run.
        Run.objects.select_for_update().filter(pk=run.pk).first()
        return _assign_locked(run=run, reviewers=reviewers, rng=rng)


def _assign_locked(*, run: Run, reviewers: list, rng: random.Random) -> int:
    k = min(run.review_k, len(reviewers))
    if ReviewAssignment.objects.filter(run=run).count() >= k * Pair.objects.filter(run=run).count():
        return 0  # every pair has its reviewers: two counts, not a pass over every pair, on each visit
    existing = ReviewAssignment.objects.filter(pair__run=run).values_list("pair_id", "annotator_id")
    load = Counter(annotator_id for _, annotator_id in existing)
    has: dict[int, set[int]] = {}
    for pair_id, annotator_id in existing:
        has.setdefault(pair_id, set()).add(annotator_id)
    created = []
    turn = 0
    for pair_id, position in Pair.objects.filter(run=run).order_by("instruction__rank", "pk").values_list("pk", "instruction__rank"):
        mine = has.get(pair_id, set())
        for _ in range(k - len(mine)):
            candidates = [u for u in reviewers if u.pk not in mine]
            # Rotate the starting point so equal loads spread round-robin.
            candidates = candidates[turn % len(candidates):] + candidates[: turn % len(candidates)]
            user = min(candidates, key=lambda u: load[u.pk])
            turn += 1
            mine.add(user.pk)
            load[user.pk] += 1
            created.append(ReviewAssignment(pair_id=pair_id, annotator=user, left_is_chosen=rng.random() < 0.5, run=run,
                                            position=position or 0))
    ReviewAssignment.objects.bulk_create(created, ignore_conflicts=True)
    if created:
        _audit(run=run, actor=None, action=AuditEvent.Action.ASSIGN, assignments=len(created), k=run.review_k)
    return len(created)


def _assignment_of(*, run: Run, user: AbstractBaseUser, assignment_id: int, lock: bool = False) -> ReviewAssignment:
    rows = ReviewAssignment.objects.select_for_update(of=("self",)) if lock else ReviewAssignment.objects
    assignment = rows.select_related("pair").filter(pk=assignment_id, pair__run=run).first()
    if assignment is None or assignment.annotator_id != user.pk:
        raise ValidationError("This pair is not assigned to you.")
    return assignment


def _order_of(choice: str, *, left_is_chosen: bool) -> str:
    if choice == Verdict.Choice.LEFT:
        return Verdict.Order.CONFIRM if left_is_chosen else Verdict.Order.SWAP
    if choice == Verdict.Choice.RIGHT:
        return Verdict.Order.SWAP if left_is_chosen else Verdict.Order.CONFIRM
    return choice  # tie, both_bad and skip read the same either way


@transaction.atomic
@transaction.atomic
def verdict_submit(*, run: Run, user: AbstractBaseUser, assignment_id: int, choice: str, rationale: str = "") -> Verdict:
    """Record the annotator's verdict on a pair assigned to them (a new verdict replaces theirs).

    The assignment row is locked first, so two verdicts sent at once (a double click, two tabs)
    are applied one after the other and exactly one stands."""
    if choice not in Verdict.Choice.values:
        raise ValidationError(f"Unknown verdict {choice!r}; use one of {', '.join(Verdict.Choice.values)}.")
    rationale = text_check(rationale, field="rationale", label="rationale", max_length=RATIONALE_MAX)
    assignment = _assignment_of(run=run, user=user, assignment_id=assignment_id, lock=True)
    now = timezone.now()
    assignment.verdicts.filter(voided_at__isnull=True).update(voided_at=now)
    verdict = Verdict.objects.create(
        assignment=assignment,
        choice=choice,
        order=_order_of(choice, left_is_chosen=assignment.left_is_chosen),
        rationale=rationale.strip(),
    )
    ReviewAssignment.objects.filter(pk=assignment.pk).update(reviewed_at=verdict.created_at)
    _audit(run=run, actor=user, action=AuditEvent.Action.VERDICT, pair=assignment.pair, choice=choice,
           order=verdict.order, rationale=verdict.rationale)
    return verdict


@transaction.atomic
def verdict_undo(*, run: Run, user: AbstractBaseUser) -> Verdict:
    """Void the annotator's latest standing verdict in this run; that pair comes back to them."""
    verdict = verdict_latest_for_user(run=run, user=user)
    if verdict is None:
        raise ValidationError("There is no verdict to undo.")
    verdict.voided_at = timezone.now()
    verdict.save(update_fields=["voided_at"])
    ReviewAssignment.objects.filter(pk=verdict.assignment_id).update(reviewed_at=None)
    _audit(run=run, actor=user, action=AuditEvent.Action.UNDO, pair=verdict.assignment.pair, choice=verdict.choice)
    return verdict


@transaction.atomic
def pair_edit(*, run: Run, user: AbstractBaseUser, assignment_id: int, side: str, text: str) -> PairEdit:
    """Replace one response's text (the side as the annotator sees it: left or right); the
    original stays on the pair and in the edit row."""
    assignment = _assignment_of(run=run, user=user, assignment_id=assignment_id)
    if side not in ("left", "right"):
        raise ValidationError("Edit the left or the right response.")
    text = text_check(text, field="text", label="response", max_length=RESPONSE_MAX).strip()
    if not text:
        raise ValidationError("A response cannot be empty; write some text or cancel the edit.")
    pair_side = PairEdit.Side.CHOSEN if (side == "left") == assignment.left_is_chosen else PairEdit.Side.REJECTED
    review = pair_review_get(pair=assignment.pair)
    current = review.chosen if pair_side == PairEdit.Side.CHOSEN else review.rejected
    if text == current:
        raise ValidationError("The text is unchanged.")
    edit = PairEdit.objects.create(pair=assignment.pair, side=pair_side, original=current, text=text, editor=user)
    _audit(run=run, actor=user, action=AuditEvent.Action.EDIT, pair=assignment.pair, side=pair_side, view_side=side,
           before=current, after=text)
    return edit


@transaction.atomic
def pair_resolve(*, run: Run, pair: Pair, outcome: str, based_on_version: int, user: AbstractBaseUser, note: str = "") -> Resolution:
    """A lead settles a pair. Refused if anything changed since they looked (stale version)."""
    if pair.run_id != run.pk:
        raise ValidationError("This pair belongs to another run.")
    if outcome not in Resolution.Outcome.values:
        raise ValidationError(f"Unknown resolution {outcome!r}; use confirm, swap or drop.")
    note = text_check(note, field="note", label="note", max_length=RATIONALE_MAX)
    Pair.objects.select_for_update().filter(pk=pair.pk).first()  # serialise resolutions of one pair
    current = pair_review_get(pair=pair).version
    if current != based_on_version:
        raise ValidationError("Someone changed this pair's review since you opened it; look again and resolve it anew.")
    resolution = Resolution.objects.create(pair=pair, outcome=outcome, based_on_version=based_on_version, note=note.strip(),
                                           resolved_by=user)
    _audit(run=run, actor=user, action=AuditEvent.Action.RESOLVE, pair=pair, outcome=outcome, note=resolution.note)
    return resolution


def api_token_create(*, user: AbstractBaseUser, name: str = "training script") -> str:
    """A new token for `user`; returned once, only its hash is kept."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    name = text_check(name, field="name", label="token name", max_length=NAME_MAX)
    ApiToken.objects.create(user=user, name=name.strip()[:80] or "training script",
                            token_hash=_hash(token), prefix=token[:12])
    return token


def api_token_authenticate(*, token: str) -> AbstractBaseUser:
    """The user a token belongs to; PermissionDenied for a missing or unknown token."""
    if not token:
        raise PermissionDenied("Send your API token as 'Authorization: Bearer <token>'.")
    api_token = ApiToken.objects.select_related("user").filter(token_hash=_hash(token)).first()
    if api_token is None or not api_token.user.is_active:
        raise PermissionDenied("Unknown API token.")
    ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=timezone.now())
    return api_token.user


def api_token_revoke(*, user: AbstractBaseUser, token_id: int) -> None:
    """Delete one of `user`'s own tokens; ApiToken.DoesNotExist for any other id (someone else's included)."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    if not deleted:
        raise ApiToken.DoesNotExist("No such token.")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def export_record(*, run: Run, user: AbstractBaseUser, fmt: str, via: str) -> None:
    _audit(run=run, actor=user, action=AuditEvent.Action.EXPORT, fmt=fmt, via=via)


def review_dataset_write(*, run: Run) -> dict:
    """Write the gated dataset (JSONL, Parquet, card) next to the run's other artifacts, for the
    training stage to read. Returns what was written: counts and paths relative to MEDIA_ROOT."""
    from pathlib import Path

    from django.conf import settings

    from icon2engine.files import atomic_path, write_atomic
    from webapp.review import export
    from webapp.review.selectors import dataset_quality_columns, dataset_row_batches, dataset_summary

    relative = Path("teams") / str(run.project.team_id) / "runs" / str(run.pk) / "reviewed"
    folder = Path(settings.MEDIA_ROOT) / relative
    folder.mkdir(parents=True, exist_ok=True)
    # Each file appears under its name only once complete (training reads pairs.jsonl), a batch at
    # a time: memory does not grow with the dataset.
    with atomic_path(folder / "pairs.jsonl") as tmp, open(tmp, "wb") as jsonl:
        meta = dataset_summary(run=run, each=lambda rows: jsonl.write(export.to_jsonl(rows)))
    with atomic_path(folder / "pairs.parquet") as tmp, open(tmp, "wb") as parquet:
        export.parquet_file(dataset_row_batches(run=run), dataset_quality_columns(run=run), out=parquet)
    write_atomic(folder / "README.md", export.dataset_card(run=run, meta=meta))
    return {**meta, "dataset_jsonl": str(relative / "pairs.jsonl"), "dataset_parquet": str(relative / "pairs.parquet")}


def review_finish(*, run: Run) -> None:
    """The review gate is passed: training may start, on the gated dataset only (pairs whose
    resolved verdict confirms an order, swaps flipped), which is written to disk here and
    described in the review stage's metrics."""
    if not run.stages.filter(kind=Stage.Kind.REVIEW, status=Stage.Status.RUNNING).exists():
        return
    gate = review_dataset_write(run=run)
    updated = run.stages.filter(kind=Stage.Kind.REVIEW, status=Stage.Status.RUNNING).update(
        status=Stage.Status.SUCCEEDED, finished_at=timezone.now(), metrics=gate,
        message=f"{gate['kept']} of {gate['total']} pairs passed review.",
    )
    if updated:
        Run.objects.filter(pk=run.pk, status=Run.Status.PAUSED).update(status=Run.Status.RUNNING)
        run_advance(run_id=run.pk)
