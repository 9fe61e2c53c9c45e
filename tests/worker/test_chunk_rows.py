"""A chunk's database reads do not depend on the pool's size (issue 15, item 1): the same number
of queries at 500 and at 5,000 instructions, each instruction query a range of this chunk's rows."""
from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from webapp.jobs.models import Chunk, Instruction
from worker import stages


class _Stop(Exception):
    pass


def _chunk_queries(monkeypatch, kind, handler, pool: int) -> list[str]:
    from tests.web.conftest import build_world, make_user

    world = build_world(owner=make_user(f"olivia{pool}"), team_name=f"Acme {pool}", project_name="P")
    Instruction.objects.bulk_create(
        Instruction(run=world.run, index=i, text=f"Instruction {i}", source="uploaded", kept=i < pool // 2, rank=i)
        for i in range(pool)
    )
    stage = world.run.stages.get(kind=kind)
    chunk = Chunk.objects.create(stage=stage, index=3, start=128, stop=256)
    monkeypatch.setattr(stages, "get_model", lambda row: object())

    def stop(run, *args, **kwargs):  # the next step after the rows are loaded
        raise _Stop

    monkeypatch.setattr(stages, "run_directions", stop)
    with CaptureQueriesContext(connection) as queries, pytest.raises(_Stop):
        handler(Chunk.objects.select_related("stage__run").get(pk=chunk.pk), beat=lambda *a, **k: None)
    return [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize("kind, handler, column", [("filter", stages.score, "index"), ("generate", stages.generate, "rank")])
def test_a_chunk_reads_the_same_queries_whatever_the_pools_size(db, monkeypatch, kind, handler, column):
    small = _chunk_queries(monkeypatch, kind, handler, 500)
    large = _chunk_queries(monkeypatch, kind, handler, 5000)
    assert len(small) == len(large)
    reads = [sql for sql in large if re.search(r'FROM "jobs_instruction"', sql)]
    assert reads
    for sql in reads:  # every read of the pool is bounded to this chunk's range, by an indexed column
        assert f'"jobs_instruction"."{column}" >= 128' in sql and f'"jobs_instruction"."{column}" < 256' in sql, sql


def test_a_reviewed_runs_generate_chunk_stores_the_evaluation_judges_verdict_per_pair(db, monkeypatch):
    """The model and the gate are stand-ins here (this test is about what the handler stores);
    the real generation path runs in tests/integration on the embedded model."""
    from icon2engine.gate import GateResult
    from icon2engine.generation import SteeredPair
    from tests.web.conftest import build_world, make_user
    from webapp.jobs.models import Pair
    from webapp.studio.models import Judge, Run

    world = build_world(owner=make_user("olivia"), team_name="Acme", project_name="P")
    Run.objects.filter(pk=world.run.pk).update(require_review=True, eval_judge=Judge.objects.get(name="Length: shorter is better"))
    Instruction.objects.bulk_create(
        Instruction(run=world.run, index=i, text=f"Instruction {i}", source="uploaded", kept=True, rank=i) for i in range(2))
    chunk = Chunk.objects.create(stage=world.run.stages.get(kind="generate"), index=0, start=0, stop=2)
    monkeypatch.setattr(stages, "get_model", lambda row: type("LM", (), {"n_layers": 4})())
    monkeypatch.setattr(stages, "run_directions", lambda run: {str(world.dimension.pk): None})
    monkeypatch.setattr(stages, "steering_dimensions", lambda rows, directions: [str(world.dimension.pk)] * len(rows))
    monkeypatch.setattr(stages, "_sample_and_rank", lambda *a, **k: None)

    def fake_gate(lm, directions, instructions, **kwargs):
        made = [("Short.", "A much longer rejected answer."), ("A long chosen answer with words.", "Short.")]
        return GateResult(pairs=[SteeredPair(instructions[i], c, r, str(world.dimension.pk), 0.08, -0.03, (1,), 0, index=i)
                                 for i, (c, r) in enumerate(made)], dropped=[], retries=0)

    monkeypatch.setattr("icon2engine.gate.generate_gated_pairs", fake_gate)
    write, compute = stages.generate(Chunk.objects.select_related("stage__run").get(pk=chunk.pk), beat=lambda *a, **k: None)
    write()
    verdicts = list(Pair.objects.filter(run=world.run).order_by("instruction__index").values_list("judge_verdict", flat=True))
    assert verdicts == [1.0, -1.0]  # shorter is better: the judge prefers chosen in the first pair only
    assert compute["judge"] == "length (shorter is better)"


@pytest.mark.parametrize("pool", [500, 5000])
def test_synthesis_finds_repeats_by_key_whatever_the_pools_size(db, pool):
    """A synthesis chunk's store reads only the rows whose key matches one of its own texts."""
    from tests.web.conftest import build_world, make_user
    from webapp.jobs.models import text_key
    from webapp.jobs.stores import instructions_synthesized_store

    world = build_world(owner=make_user(f"sam{pool}"), team_name=f"S {pool}", project_name="P")
    Instruction.objects.bulk_create(
        Instruction(run=world.run, index=i, text=f"Instruction {i}", folded=text_key(f"Instruction {i}"), source="synthesized")
        for i in range(pool)
    )
    with CaptureQueriesContext(connection) as queries:
        added = instructions_synthesized_store(run_id=world.run.pk, start=pool, texts=["instruction 7", "A new one.", "a NEW one."])
    assert added == 1
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(reads) == 1 and '"jobs_instruction"."folded" IN' in reads[0]
