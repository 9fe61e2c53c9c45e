from __future__ import annotations

from django.db.models import QuerySet

from webapp.jobs.models import Instruction, Pair
from webapp.studio.models import Run


def pair_list_for_run(*, run: Run) -> QuerySet[Pair]:
    return Pair.objects.filter(run=run).select_related("instruction", "dimension").order_by("instruction__rank", "pk")


def instruction_list_for_run(*, run: Run) -> QuerySet[Instruction]:
    return Instruction.objects.filter(run=run).order_by("index")
