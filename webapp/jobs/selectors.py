from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import QuerySet

from webapp.jobs.models import Instruction, Pair
from webapp.studio.models import Run

if TYPE_CHECKING:
    import numpy as np


def pair_list_for_run(*, run: Run) -> QuerySet[Pair]:
    return Pair.objects.filter(run=run).select_related("instruction", "dimension").order_by("instruction__rank", "pk")


def instruction_list_for_run(*, run: Run) -> QuerySet[Instruction]:
    return Instruction.objects.filter(run=run).order_by("index")


_SCORES_CACHE: dict[tuple[int, int], "np.ndarray"] = {}


def filter_scores_sorted(*, stage) -> "np.ndarray":
    """A run's consistency scores, sorted ascending (float64): what the filter stored when it
    ranked the pool, kept in this process after the first read (the slider asks on every move);
    read from the rows for a run ranked before scores were stored."""
    import numpy as np

    from webapp.jobs.models import FilterScores

    head = FilterScores.objects.filter(stage=stage).values_list("pk", "count").first()
    if head is None:
        values = stage.run.instructions.filter(consistency__isnull=False).values_list("consistency", flat=True)
        return np.sort(np.fromiter(values.iterator(chunk_size=20000), dtype=np.float64))
    if head not in _SCORES_CACHE:
        if len(_SCORES_CACHE) > 8:
            _SCORES_CACHE.clear()
        _SCORES_CACHE[head] = FilterScores.objects.get(pk=head[0]).array()
    return _SCORES_CACHE[head]


# What each stage's chunk reads (worker/stages.py): only its own rows, by an indexed range. --------


def direction_paths(*, run: Run) -> dict[int, str]:
    """The run's direction files, by dimension id, in id order."""
    from webapp.jobs.models import DirectionArtifact

    return dict(DirectionArtifact.objects.filter(run=run).order_by("dimension_id").values_list("dimension_id", "path"))


def score_chunk_rows(*, run: Run, start: int, stop: int) -> list[Instruction]:
    """A score chunk's instructions: the index range [start, stop) (a synthesised pool may have gaps)."""
    return list(run.instructions.filter(index__gte=start, index__lt=stop).order_by("index"))


def kept_rows(*, run: Run, start: int = 0, stop: int | None = None) -> list[Instruction]:
    """The filter's kept instructions ranked [start, stop): ranks 0..k−1 of its order (the
    generate chunk's slice; calibration's sample reads a prefix)."""
    rows = run.instructions.filter(kept=True, rank__gte=start)
    if stop is not None:
        rows = rows.filter(rank__lt=stop)
    return list(rows.order_by("rank", "index").select_related("winner"))


def kept_count(*, run: Run) -> int:
    return run.instructions.filter(kept=True).count()


def kept_rows_at(*, run: Run, ranks: list[int]) -> list[Instruction]:
    """The kept instructions at the given ranks (calibration's sample), in rank order."""
    return list(run.instructions.filter(kept=True, rank__in=ranks).order_by("rank", "index").select_related("winner"))


@dataclass(frozen=True)
class HeldOut:
    """What evaluation uses and training leaves out: instruction ids to evaluate on, pair ids reserved."""

    eval_instructions: list[int]
    reserved_pairs: list[int]


def held_out_split(*, run: Run, limit: int) -> HeldOut:
    """The held-out split, by id. The filter's rejects were never turned into pairs, so they are
    natural held-out instructions (the first ``limit`` by index). When the filter kept (nearly)
    everything, a fifth of the pairs (the least consistent, at least two) is set aside instead."""
    rejects = list(run.instructions.filter(kept=False).order_by("index").values_list("pk", flat=True)[: max(limit, 4)])
    if len(rejects) >= 4:
        return HeldOut(rejects[:limit], [])
    total = run.pairs.count()
    n = max(2, total // 5) if total >= 4 else 0
    reserved = list(run.pairs.order_by("-instruction__rank").values_list("pk", "instruction_id")[:n])
    return HeldOut(rejects + [iid for _, iid in reserved][: max(0, limit - len(rejects))], [pid for pid, _ in reserved])


def training_rows(*, run: Run) -> tuple[list[dict], dict]:
    """The rows DPO trains on and what the gate said of them. A reviewed run trains on exactly the
    dataset *Review done* wrote (the review stage's ``dataset_jsonl``), so the data trained on and
    the gate's figures always agree; a run without review on every pair as generated."""
    import json
    from pathlib import Path

    from django.conf import settings

    from webapp.review.selectors import dataset_rows
    from webapp.studio.models import Stage

    review = run.stages.filter(kind=Stage.Kind.REVIEW, status=Stage.Status.SUCCEEDED).values_list("metrics", flat=True).first()
    if run.require_review and review and review.get("dataset_jsonl"):
        path = Path(settings.MEDIA_ROOT) / review["dataset_jsonl"]
        if not path.exists():
            raise FileNotFoundError(f"the reviewed dataset {review['dataset_jsonl']} is missing; finish the review again")
        with path.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()], review
    return dataset_rows(run=run)
