"""Storing what a stage computed: every ORM write the worker's handlers make goes through here.

A handler (worker/stages.py) loads its rows through selectors, calls the engine, and returns a
``write`` that calls one of these inside the transaction that marks its chunk done
(:func:`webapp.jobs.services.chunk_complete`); the stage's metrics go through the locked
:func:`webapp.jobs.services.stage_metrics_merge`.
"""
from __future__ import annotations

from itertools import islice

from webapp.jobs.models import DirectionArtifact, Instruction, Pair, text_key
from webapp.studio.models import Run

IMPORT_BATCH = 5000


def instructions_import_upload(*, run: Run) -> int:
    """Store an uploaded list as the run's instructions (once), streamed from the file into the
    database in batches: a million-line file is never held in memory whole."""
    from webapp.studio.instructions import EMPTY_FILE, instructions_iter

    if not run.instructions_file:
        raise ValueError("the run has no uploaded instruction file; create a new run with one")
    count = 0
    run.instructions_file.open("rb")
    try:
        texts = instructions_iter(name=run.instructions_file.name, stream=run.instructions_file)
        while batch := list(islice(texts, IMPORT_BATCH)):
            Instruction.objects.bulk_create(
                [Instruction(run=run, index=count + i, text=t, folded=text_key(t), source=Instruction.Source.UPLOADED)
                 for i, t in enumerate(batch)],
                ignore_conflicts=True,
            )
            count += len(batch)
    finally:
        run.instructions_file.close()
    if not count:
        raise ValueError(EMPTY_FILE)
    return count


def instructions_synthesized_store(*, run_id: int, start: int, texts: list[str]) -> int:
    """Add a synthesis chunk's instructions at indexes ``start…``, skipping any the run already has
    (case-insensitively). Repeats are found through the indexed ``folded`` key, so a chunk reads
    only the rows that may repeat its own, never the pool: synthesis scales to a million. Returns
    how many were added."""
    wanted: dict[str, tuple[int, str]] = {}
    for j, text in enumerate(texts):
        wanted.setdefault(text.casefold(), (j, text))  # the first of the chunk's own repeats
    keys = {text_key(text): folded for folded, (_, text) in wanted.items()}
    seen: set[str] = set()
    for at in range(0, len(keys), 500):
        batch = list(keys)[at : at + 500]
        for text in Instruction.objects.filter(run_id=run_id, folded__in=batch).values_list("text", flat=True):
            seen.add(text.casefold())  # the key narrows, the text decides (a 64-bit key may collide)
    rows = [Instruction(run_id=run_id, index=start + j, text=text, folded=text_key(text), source=Instruction.Source.SYNTHESIZED)
            for folded, (j, text) in sorted(wanted.items(), key=lambda kv: kv[1][0]) if folded not in seen]
    Instruction.objects.bulk_create(rows)
    return len(rows)


def scores_store(*, pks: list[int], dimensions: list[str], scores: list[list[float]]) -> None:
    """A score chunk's raw consistency per dimension, one row per instruction."""
    rows = [Instruction(pk=pk, scores={name: float(v) for name, v in zip(dimensions, values)}) for pk, values in zip(pks, scores)]
    Instruction.objects.bulk_update(rows, ["scores"], batch_size=1000)


def directions_store(*, run: Run, items: list[tuple[int, str, str, list]]) -> None:
    """The extract chunk's direction files, one per dimension: (dimension id, path, gguf path, diagnostics)."""
    for dimension_id, path, gguf, diagnostics in items:
        DirectionArtifact.objects.update_or_create(
            run=run, dimension_id=dimension_id, defaults={"path": path, "gguf_path": gguf, "diagnostics": diagnostics},
        )


def pairs_store(*, run_id: int, pairs: list[dict]) -> None:
    """A generate chunk's pairs (each a dict of Pair fields, the instruction by id)."""
    Pair.objects.bulk_create([Pair(run_id=run_id, **p) for p in pairs])


def run_gamma_store(*, run_id: int, gamma_plus: float, gamma_minus: float) -> None:
    """Calibration's pick becomes the γ⁺ / γ⁻ the run generates with; the requested ones stay."""
    Run.objects.filter(pk=run_id).update(gamma_plus_used=gamma_plus, gamma_minus_used=gamma_minus)
