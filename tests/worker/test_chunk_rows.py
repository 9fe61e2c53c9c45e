"""A chunk reads only its own rows: the instruction query carries LIMIT/OFFSET (issue 15, item 1)."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from webapp.jobs.models import Chunk, Instruction
from worker import stages


class _Stop(Exception):
    pass


@pytest.mark.parametrize("kind, handler", [("filter", stages.score), ("generate", stages.generate)])
def test_a_chunk_loads_only_its_slice_of_the_pool(db, monkeypatch, kind, handler):
    from tests.web.conftest import build_world, make_user

    world = build_world(owner=make_user("olivia"), team_name="Acme", project_name="P")
    Instruction.objects.bulk_create(
        Instruction(run=world.run, index=i, text=f"Instruction {i}", source="uploaded", kept=True, rank=i) for i in range(500)
    )
    stage = world.run.stages.get(kind=kind)
    chunk = Chunk.objects.create(stage=stage, index=3, start=300, stop=400)
    monkeypatch.setattr(stages, "get_model", lambda row: object())

    def stop(run, *args, **kwargs):  # the next step after the rows are loaded
        raise _Stop

    monkeypatch.setattr(stages, "run_directions", stop)
    with CaptureQueriesContext(connection) as queries, pytest.raises(_Stop):
        handler(Chunk.objects.select_related("stage__run").get(pk=chunk.pk), beat=lambda *a, **k: None)
    selects = [q["sql"] for q in queries.captured_queries if 'FROM "jobs_instruction"' in q["sql"]]
    assert selects and all("LIMIT 100" in sql and "OFFSET 300" in sql for sql in selects), selects
