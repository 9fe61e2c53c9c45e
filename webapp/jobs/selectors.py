from __future__ import annotations

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
