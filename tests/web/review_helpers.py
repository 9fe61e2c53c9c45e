"""Steered pairs made directly in the database (no model needed) for the review tests."""
from __future__ import annotations

from webapp.jobs.models import Instruction, Pair
from webapp.studio.models import Run


def make_pairs(run: Run, n: int, *, dimension=None) -> list[Pair]:
    dimension = dimension or run.dimensions.first()
    pairs = []
    for i in range(n):
        instruction = Instruction.objects.create(
            run=run, index=i, text=f"Instruction {i}: explain topic {i}.", source="synthesized", kept=True, rank=i
        )
        pairs.append(
            Pair.objects.create(
                run=run,
                instruction=instruction,
                dimension=dimension,
                chosen=f"A kind and helpful answer about topic {i}.",
                rejected=f"A curt and unhelpful answer about topic {i}.",
                gamma_plus=0.05,
                gamma_minus=-0.05,
                layers=[10, 11, 12],
                seed=7,
            )
        )
    return pairs
