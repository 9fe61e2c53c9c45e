"""Reads for review: queues, progress, each pair's resolved verdict, agreement, the gated dataset."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet

from icon2engine.formats import trl_row
from webapp.accounts.models import Membership
from webapp.accounts.roles import Perm, ROLE_PERMS
from webapp.jobs.models import Pair
from webapp.review.agreement import judge_agreement, run_agreement, steering_agreement
from webapp.review.models import AuditEvent, PairEdit, Resolution, ReviewAssignment, Verdict
from webapp.studio.models import Run

PENDING = "pending"  # nobody has given a verdict that counts yet
DISPUTED = "disputed"  # the verdicts disagree and no lead has resolved it


def reviewer_list(*, run: Run) -> QuerySet[Membership]:
    """Team members who may review: annotators, engineers and owners, in a stable order."""
    roles = [role for role, perms in ROLE_PERMS.items() if Perm.REVIEW in perms]
    return Membership.objects.filter(team_id=run.project.team_id, role__in=roles).select_related("user").order_by("user__username", "pk")


def assignment_list_for_user(*, run: Run, user: AbstractBaseUser) -> QuerySet[ReviewAssignment]:
    return ReviewAssignment.objects.filter(pair__run=run, annotator=user).select_related("pair__instruction")


def assignment_next_for_user(*, run: Run, user: AbstractBaseUser) -> ReviewAssignment | None:
    """The annotator's first pair without a standing verdict (an undone one comes back): the first
    entry of the assignment_open index, however many pairs the run has."""
    return (
        ReviewAssignment.objects.filter(run=run, annotator=user, reviewed_at__isnull=True)
        .select_related("pair__instruction").order_by("position", "pair_id").first()  # the index's own order
    )


def verdict_latest_for_user(*, run: Run, user: AbstractBaseUser) -> Verdict | None:
    latest = (ReviewAssignment.objects.filter(run=run, annotator=user, reviewed_at__isnull=False)
              .order_by("-reviewed_at").values_list("pk", flat=True).first())
    if latest is None:
        return None
    return Verdict.objects.filter(assignment_id=latest, voided_at__isnull=True).order_by("-created_at", "-pk").first()


@dataclass
class Progress:
    username: str
    done: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0


def progress_for_user(*, run: Run, user: AbstractBaseUser) -> Progress:
    qs = ReviewAssignment.objects.filter(run=run, annotator=user)
    return Progress(username=user.get_username(), done=qs.filter(reviewed_at__isnull=False).count(), total=qs.count())


def progress_list(*, run: Run) -> list[Progress]:
    rows = (
        ReviewAssignment.objects.filter(run=run)
        .values("annotator__username")
        .annotate(total=Count("pk"), done=Count("pk", filter=Q(reviewed_at__isnull=False)))
        .order_by("annotator__username")
    )
    return [Progress(username=r["annotator__username"], done=r["done"], total=r["total"]) for r in rows]


@dataclass
class PairReview:
    """Everything review knows about one pair."""

    pair: Pair
    chosen: str
    rejected: str
    edited: bool
    verdicts: list[Verdict] = field(default_factory=list)  # standing ones, with annotator loaded
    resolution: Resolution | None = None
    version: int = 0

    @property
    def orders(self) -> list[str]:
        return [v.order for v in self.verdicts if v.order != Verdict.Order.SKIP]

    @property
    def annotators(self) -> list[str]:
        return sorted({v.assignment.annotator.get_username() for v in self.verdicts if v.order != Verdict.Order.SKIP})

    @property
    def outcome(self) -> str:
        """confirm, swap, drop (a lead's resolution or a unanimous verdict), pending or disputed."""
        if self.resolution is not None:
            return self.resolution.outcome
        orders = set(self.orders)
        if not orders:
            return PENDING
        if len(orders) > 1:
            return DISPUTED
        (order,) = orders
        return order if order in (Verdict.Order.CONFIRM, Verdict.Order.SWAP) else Resolution.Outcome.DROP

    @property
    def agreement(self) -> float | None:
        """The share of standing verdicts that agree with the most common one."""
        orders = self.orders
        if not orders:
            return None
        return max(orders.count(o) for o in set(orders)) / len(orders)


@dataclass(frozen=True)
class Answering:
    """Whether one response answers its instruction, as the engine measured it when generating
    (``<side>_relevance`` and ``<side>_refusal`` in ``Pair.quality``; icon2engine.quality)."""

    relevance: float | None  # nats per token the instruction adds to its content: on topic ≈ 0.1–0.6
    refuses: bool


def pair_answering(*, pair: Pair, side: str) -> Answering | None:
    """The ``side`` ("chosen" or "rejected") of ``pair``; None for pairs stored before it was measured."""
    quality = pair.quality or {}
    relevance, refusal = quality.get(f"{side}_relevance"), quality.get(f"{side}_refusal")
    relevance = float(relevance) if isinstance(relevance, (int, float)) and not isinstance(relevance, bool) else None
    refuses = bool(refusal)
    if relevance is None and not refuses:
        return None
    return Answering(relevance=relevance, refuses=refuses)


def quality_swapped(quality: dict) -> dict:
    """A pair's quality columns after a reviewer's swap: ``chosen_*`` now describes what was rejected."""
    swap = {"chosen_": "rejected_", "rejected_": "chosen_"}
    return {next((swap[p] + k[len(p):] for p in swap if k.startswith(p)), k): v for k, v in quality.items()}


def pair_review_list(*, run: Run, pairs: QuerySet[Pair] | list[Pair] | None = None) -> list[PairReview]:
    if not isinstance(pairs, list):
        pairs = list((pairs if pairs is not None else Pair.objects.filter(run=run)).select_related("instruction", "dimension"))
    ids = [p.pk for p in pairs]
    all_verdicts = Verdict.objects.filter(assignment__pair_id__in=ids).select_related("assignment__annotator")
    standing: dict[int, list[Verdict]] = defaultdict(list)
    changes: dict[int, int] = defaultdict(int)
    for verdict in all_verdicts:
        pair_id = verdict.assignment.pair_id
        changes[pair_id] += 2 if verdict.voided_at else 1
        if verdict.voided_at is None:
            standing[pair_id].append(verdict)
    latest_edit: dict[tuple[int, str], PairEdit] = {}
    for edit in PairEdit.objects.filter(pair_id__in=ids):
        latest_edit[(edit.pair_id, edit.side)] = edit
        changes[edit.pair_id] += 1
    resolutions: dict[int, Resolution] = {}
    for resolution in Resolution.objects.filter(pair_id__in=ids).select_related("resolved_by"):
        resolutions[resolution.pair_id] = resolution
        changes[resolution.pair_id] += 1
    out = []
    for pair in pairs:
        chosen_edit, rejected_edit = latest_edit.get((pair.pk, "chosen")), latest_edit.get((pair.pk, "rejected"))
        out.append(
            PairReview(
                pair=pair,
                chosen=chosen_edit.text if chosen_edit else pair.chosen,
                rejected=rejected_edit.text if rejected_edit else pair.rejected,
                edited=bool(chosen_edit or rejected_edit),
                verdicts=standing[pair.pk],
                resolution=resolutions.get(pair.pk),
                version=changes[pair.pk],
            )
        )
    return out


def pair_review_get(*, pair: Pair) -> PairReview:
    return pair_review_list(run=pair.run, pairs=Pair.objects.filter(pk=pair.pk))[0]


def _touched_pairs(run: Run) -> QuerySet[Pair]:
    """The run's pairs that anyone has reviewed, edited or resolved; the rest are pending."""
    return Pair.objects.filter(run=run).filter(
        Q(pk__in=Verdict.objects.filter(assignment__pair__run=run, voided_at__isnull=True).values("assignment__pair_id"))
        | Q(pk__in=Resolution.objects.filter(pair__run=run).values("pair_id"))
        | Q(pk__in=PairEdit.objects.filter(pair__run=run).values("pair_id"))
    )


def review_summary(*, run: Run) -> dict:
    """Agreement between annotators, with the steering direction, and what the lead must resolve.

    Reads only the pairs someone has touched; the others are counted as pending, so the lead page
    costs what the review has done, not what the run holds."""
    reviews = pair_review_list(run=run, pairs=_touched_pairs(run))
    untouched = Pair.objects.filter(run=run).count() - len(reviews)
    labels = {
        r.pair.pk: {v.assignment.annotator.get_username(): v.order for v in r.verdicts if v.order != Verdict.Order.SKIP}
        for r in reviews
    }
    outcomes = defaultdict(int)
    for r in reviews:
        outcomes[r.outcome] += 1
    if untouched:
        outcomes[PENDING] += untouched
    disagreements = [r for r in reviews if len(set(r.orders)) > 1]
    judged = [r for r in reviews if r.outcome in (Resolution.Outcome.CONFIRM, Resolution.Outcome.SWAP)
              and r.pair.judge_verdict is not None]
    judge = judge_agreement([(r.outcome, r.pair.judge_verdict) for r in judged])
    judge["name"] = run.eval_judge_label
    judge["disagreements"] = [
        r for r in judged if (r.pair.judge_verdict > 0) != (r.outcome == Resolution.Outcome.CONFIRM) or r.pair.judge_verdict == 0
    ]
    return {
        "judge": judge,
        "reviews": reviews,
        "agreement": run_agreement({k: v for k, v in labels.items() if len(v) >= 2}),
        "steering": steering_agreement([o for r in reviews for o in r.orders]),
        "outcomes": dict(outcomes),
        "total": len(reviews) + untouched,
        "disagreements": disagreements,
        "unresolved": sum(1 for r in disagreements if r.resolution is None),
    }


DATASET_BATCH = 1000


def dataset_note(run: Run) -> str:
    return ("Only pairs whose reviewed verdict confirms an order are included; swapped pairs are flipped."
            if run.require_review
            else "Review was not required for this run: all pairs are included as generated, none were reviewed.")


def _pair_batches(run: Run, size: int):
    """The run's pairs in dataset order (their instruction's rank), a batch at a time, by keyset."""
    pairs = Pair.objects.filter(run=run).select_related("instruction", "dimension")
    if pairs.filter(instruction__rank__isnull=True).exists():  # not ranked: pk order, still by keyset
        last = 0
        while batch := list(pairs.filter(pk__gt=last).order_by("pk")[:size]):
            yield batch
            last = batch[-1].pk
        return
    last_rank = -1
    while batch := list(pairs.filter(instruction__rank__gt=last_rank).order_by("instruction__rank", "pk")[:size]):
        yield batch
        last_rank = batch[-1].instruction.rank


def dataset_row_batches(*, run: Run, counts: dict | None = None, size: int | None = None):
    """The dataset's rows (see :func:`dataset_rows`), a batch at a time, so an export of 100,000
    pairs never holds them all; ``counts`` (if given) gathers the outcomes seen."""
    model = run.model.path_or_id or run.model.name
    for pairs in _pair_batches(run, size or DATASET_BATCH):
        rows = []
        for r in pair_review_list(run=run, pairs=pairs):
            outcome = r.outcome if run.require_review else "not_reviewed"
            if counts is not None:
                counts[outcome] = counts.get(outcome, 0) + 1
            if run.require_review and outcome not in (Resolution.Outcome.CONFIRM, Resolution.Outcome.SWAP):
                continue
            swapped = outcome == Resolution.Outcome.SWAP
            chosen, rejected = (r.rejected, r.chosen) if swapped else (r.chosen, r.rejected)
            prompt = r.pair.instruction.text
            rows.append(trl_row(
                prompt, chosen, rejected,
                pair_id=r.pair.pk,
                dimension=r.pair.dimension.name if r.pair.dimension else "",
                gamma_plus=float(r.pair.gamma_plus),
                gamma_minus=float(r.pair.gamma_minus),
                layers=[int(x) for x in r.pair.layers],
                model=model,
                model_revision=run.model.revision,
                seed=int(r.pair.seed),
                steering_mode=run.steering_mode,
                pairing=run.pairing,
                no_repeat_ngram_size=run.no_repeat_ngram_size,
                repetition_penalty=float(run.repetition_penalty),
                verdict=outcome,
                annotators=r.annotators,
                agreement=r.agreement,
                edited=r.edited,
                # the engine's quality columns (icon2engine.quality.quality_columns), stored per pair as
                # written; after a swap they follow their text to the other side
                **(quality_swapped(r.pair.quality or {}) if swapped else (r.pair.quality or {})),
                retries=len(r.pair.retries or []),
            ))
        yield rows


def dataset_rows(*, run: Run) -> tuple[list[dict], dict]:
    """The pairs training and export may use, as TRL conversational rows, and what was done.

    With review required, only pairs whose resolved verdict confirms an order are kept; a swap
    flips chosen and rejected; tie, both bad, pending and disputed pairs are left out. Without
    review every pair passes as generated."""
    counts: dict[str, int] = {}
    rows = [row for batch in dataset_row_batches(run=run, counts=counts) for row in batch]
    return rows, _dataset_meta(run, counts, rows)


def _dataset_meta(run: Run, counts: dict, rows: list[dict], kept: int | None = None, dimensions=None) -> dict:
    return {
        "require_review": run.require_review,
        "total": sum(counts.values()),
        "kept": len(rows) if kept is None else kept,
        "counts": counts,
        "note": dataset_note(run),
        "dimensions": sorted({r["dimension"] for r in rows} if dimensions is None else dimensions),
    }


def dataset_meta_from_summary(*, run: Run, summary: dict) -> dict:
    """The export's counts as :func:`dataset_rows` gives them, from a review summary (no pass over the rows)."""
    if run.require_review:
        counts = dict(summary["outcomes"])
        kept = counts.get(Resolution.Outcome.CONFIRM, 0) + counts.get(Resolution.Outcome.SWAP, 0)
    else:
        counts = {"not_reviewed": summary["total"]} if summary["total"] else {}
        kept = summary["total"]
    return _dataset_meta(run, counts, [], kept=kept, dimensions=())


def dataset_summary(*, run: Run, each=None) -> dict:
    """What :func:`dataset_rows` says of the dataset, read a batch at a time; ``each`` (if given)
    is called with every batch of rows (to write them somewhere) as it goes."""
    counts: dict[str, int] = {}
    kept, dims = 0, set()
    for batch in dataset_row_batches(run=run, counts=counts):
        kept += len(batch)
        dims.update(r["dimension"] for r in batch)
        if each is not None:
            each(batch)
    return _dataset_meta(run, counts, [], kept=kept, dimensions=dims)


def dataset_quality_columns(*, run: Run) -> list[str]:
    """Every quality column the run's pairs carry (one streamed pass over a small JSON field)."""
    names: set[str] = set()
    for quality in Pair.objects.filter(run=run).values_list("quality", flat=True).iterator(chunk_size=5000):
        names.update(quality or {})
    return sorted(names)



def audit_list(*, run: Run, limit: int = 200) -> QuerySet[AuditEvent]:
    return run.review_events.select_related("actor", "pair__instruction")[:limit]
