"""Migration review/0002 fills the queue columns of assignments made before it (run, place, and
when the standing verdict was given), so an upgraded studio serves the same next pair."""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)


def test_existing_assignments_get_their_run_place_and_standing_verdict(owner, annotator):
    from tests.web.conftest import build_world
    from tests.web.review_helpers import make_pairs

    world = build_world(owner=owner, team_name="Acme", project_name="P")
    pairs = make_pairs(world.run, 3)
    executor = MigrationExecutor(connection)
    executor.migrate([("review", "0001_initial")])
    old = executor.loader.project_state([("review", "0001_initial")]).apps
    Assignment, Verdict = old.get_model("review", "ReviewAssignment"), old.get_model("review", "Verdict")
    rows = [Assignment.objects.create(pair_id=p.pk, annotator_id=annotator.pk, left_is_chosen=True) for p in pairs]
    Verdict.objects.create(assignment=rows[0], choice="left", order="confirm")
    undone = Verdict.objects.create(assignment=rows[1], choice="left", order="confirm")
    Verdict.objects.filter(pk=undone.pk).update(voided_at=undone.created_at)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    from webapp.review.models import ReviewAssignment, Verdict as NewVerdict
    from webapp.review.selectors import assignment_next_for_user, progress_for_user

    got = {a.pair_id: a for a in ReviewAssignment.objects.all()}
    assert all(a.run_id == world.run.pk for a in got.values())
    assert [got[p.pk].position for p in pairs] == [p.instruction.rank for p in pairs]
    assert got[pairs[0].pk].reviewed_at == NewVerdict.objects.get(assignment_id=rows[0].pk).created_at
    assert got[pairs[1].pk].reviewed_at is None and got[pairs[2].pk].reviewed_at is None
    assert assignment_next_for_user(run=world.run, user=annotator).pair_id == pairs[1].pk
    assert (progress_for_user(run=world.run, user=annotator).done, progress_for_user(run=world.run, user=annotator).total) == (1, 3)
