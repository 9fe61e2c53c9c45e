"""Review services: assignment to k reviewers, verdicts and their mapping, undo, edits,
agreement, stale resolutions, the gate and the audit log."""
from __future__ import annotations

import random

import pytest
from django.core.exceptions import ValidationError

from webapp.review import selectors, services
from webapp.review.agreement import run_agreement, steering_agreement, two_rater_agreement
from webapp.review.models import AuditEvent, PairEdit, ReviewAssignment, Verdict

from .review_helpers import make_pairs

pytestmark = pytest.mark.django_db


def _choice_for(assignment: ReviewAssignment, order: str) -> str:
    """The side an annotator clicks to express `order` (confirm or swap) given what they saw."""
    if order in ("tie", "both_bad", "skip"):
        return order
    confirm_side = "left" if assignment.left_is_chosen else "right"
    other = "right" if confirm_side == "left" else "left"
    return confirm_side if order == "confirm" else other


def _judge(run, user, pair, order):
    assignment = ReviewAssignment.objects.get(pair=pair, annotator=user)
    return services.verdict_submit(run=run, user=user, assignment_id=assignment.pk, choice=_choice_for(assignment, order))


def test_each_pair_goes_to_k_distinct_reviewers_spread_evenly(ours, owner, engineer, annotator, viewer):
    ours.run.review_k = 2
    ours.run.save()
    pairs = make_pairs(ours.run, 6)
    created = services.review_assign(run=ours.run, rng=random.Random(1))
    assert created == 12
    for pair in pairs:
        reviewers = set(pair.assignments.values_list("annotator__username", flat=True))
        assert len(reviewers) == 2
        assert "victor" not in reviewers, "viewers never review"
    loads = [ReviewAssignment.objects.filter(annotator=u).count() for u in (owner, engineer, annotator)]
    assert loads == [4, 4, 4]
    assert services.review_assign(run=ours.run) == 0, "assigning again changes nothing"


def test_k_larger_than_the_team_gives_each_pair_to_everyone_who_can_review(ours):
    ours.run.review_k = 5
    ours.run.save()
    make_pairs(ours.run, 2)
    services.review_assign(run=ours.run)
    assert ReviewAssignment.objects.count() == 6


def test_a_reviewer_who_joins_later_is_given_pairs_on_their_first_visit_and_a_visit_after_that_assigns_nothing(
        ours, owner, annotator, django_user_model):
    from webapp.accounts.roles import Role
    from webapp.accounts.services import membership_add

    ours.run.review_k = 5
    ours.run.save()
    make_pairs(ours.run, 3)
    assert services.review_assign_for_visit(run=ours.run, user=annotator) == 9  # owner, eddie, anna
    assert services.review_assign_for_visit(run=ours.run, user=annotator) == 0
    bea = django_user_model.objects.create_user(username="bea", password="pw-123456789")
    membership_add(team=ours.team, user=bea, role=Role.ANNOTATOR, actor=owner)
    assert services.review_assign_for_visit(run=ours.run, user=bea) == 3  # k=5 > 4 reviewers: she gets every pair
    assert ReviewAssignment.objects.filter(run=ours.run, annotator=bea).count() == 3
    assert selectors.assignment_next_for_user(run=ours.run, user=bea) is not None


def test_default_k_of_one_gives_anna_her_own_queue_and_progress(ours, annotator):
    make_pairs(ours.run, 6)
    services.review_assign(run=ours.run)
    progress = selectors.progress_for_user(run=ours.run, user=annotator)
    assert (progress.done, progress.total) == (0, 2)
    first = selectors.assignment_next_for_user(run=ours.run, user=annotator)
    services.verdict_submit(run=ours.run, user=annotator, assignment_id=first.pk, choice="tie")
    assert selectors.progress_for_user(run=ours.run, user=annotator).done == 1
    assert {p.username: p.done for p in selectors.progress_list(run=ours.run)} == {"anna": 1, "eddie": 0, "olivia": 0}


def test_left_and_right_map_back_to_confirm_or_swap_through_the_hidden_side(ours, annotator):
    ours.run.review_k = 3
    ours.run.save()
    pair = make_pairs(ours.run, 1)[0]
    services.review_assign(run=ours.run)
    assignment = ReviewAssignment.objects.get(pair=pair, annotator=annotator)
    verdict = services.verdict_submit(run=ours.run, user=annotator, assignment_id=assignment.pk, choice="left")
    assert verdict.order == ("confirm" if assignment.left_is_chosen else "swap")
    verdict = services.verdict_submit(run=ours.run, user=annotator, assignment_id=assignment.pk, choice="right")
    assert verdict.order == ("swap" if assignment.left_is_chosen else "confirm")
    assert Verdict.objects.filter(assignment=assignment, voided_at__isnull=True).count() == 1, "a new verdict replaces hers"


def test_anna_cannot_give_a_verdict_on_a_pair_assigned_to_someone_else(ours, annotator, engineer):
    ours.run.review_k = 1
    ours.run.save()
    make_pairs(ours.run, 3)
    services.review_assign(run=ours.run)
    eddies = ReviewAssignment.objects.filter(annotator=engineer).first()
    with pytest.raises(ValidationError, match="not assigned to you"):
        services.verdict_submit(run=ours.run, user=annotator, assignment_id=eddies.pk, choice="left")
    assert not Verdict.objects.exists()


def test_an_unknown_verdict_is_refused(ours, annotator):
    make_pairs(ours.run, 3)
    services.review_assign(run=ours.run)
    mine = ReviewAssignment.objects.filter(annotator=annotator).first()
    with pytest.raises(ValidationError, match="Unknown verdict"):
        services.verdict_submit(run=ours.run, user=annotator, assignment_id=mine.pk, choice="maybe")


def test_undo_voids_annas_latest_verdict_and_the_pair_comes_back(ours, annotator):
    make_pairs(ours.run, 6)
    services.review_assign(run=ours.run)
    first = selectors.assignment_next_for_user(run=ours.run, user=annotator)
    services.verdict_submit(run=ours.run, user=annotator, assignment_id=first.pk, choice="left")
    assert selectors.assignment_next_for_user(run=ours.run, user=annotator) != first
    undone = services.verdict_undo(run=ours.run, user=annotator)
    assert undone.voided_at is not None
    assert selectors.assignment_next_for_user(run=ours.run, user=annotator) == first
    with pytest.raises(ValidationError, match="no verdict to undo"):
        services.verdict_undo(run=ours.run, user=annotator)


def test_an_edit_keeps_the_original_and_an_empty_edit_is_refused(ours, annotator):
    pair = make_pairs(ours.run, 1)[0]
    ours.run.review_k = 3
    ours.run.save()
    services.review_assign(run=ours.run)
    assignment = ReviewAssignment.objects.get(pair=pair, annotator=annotator)
    with pytest.raises(ValidationError, match="cannot be empty"):
        services.pair_edit(run=ours.run, user=annotator, assignment_id=assignment.pk, side="left", text="   ")
    assert not PairEdit.objects.exists()
    edit = services.pair_edit(run=ours.run, user=annotator, assignment_id=assignment.pk, side="left", text="Better text.")
    assert edit.side == ("chosen" if assignment.left_is_chosen else "rejected")
    assert edit.original == getattr(pair, edit.side)
    pair.refresh_from_db()
    assert "Better text." not in (pair.chosen, pair.rejected), "the generated text stays on the pair"
    review = selectors.pair_review_get(pair=pair)
    assert review.edited and getattr(review, edit.side) == "Better text."


def test_percent_agreement_and_kappa_on_a_known_table():
    # 10 items, two raters: 7 agreements. Marginals: a = 6 confirm / 4 swap, b = 5 / 5.
    a = ["confirm"] * 5 + ["swap"] * 3 + ["confirm", "swap"]
    b = ["confirm"] * 4 + ["swap"] + ["swap"] * 3 + ["swap", "confirm"]
    percent, kappa = two_rater_agreement(a, b)
    # p_o = 0.7, p_e = 0.6·0.5 + 0.4·0.5 = 0.5, κ = (0.7 − 0.5) / (1 − 0.5) = 0.4
    assert percent == pytest.approx(70.0)
    assert kappa == pytest.approx(0.4)


def test_kappa_is_undefined_when_both_raters_use_one_label():
    assert two_rater_agreement(["confirm"] * 3, ["confirm"] * 3) == (100.0, None)


def test_run_agreement_compares_every_two_annotators_on_their_shared_pairs():
    labels = {
        1: {"anna": "confirm", "eddie": "confirm", "olivia": "swap"},
        2: {"anna": "swap", "eddie": "swap"},
        3: {"anna": "tie", "olivia": "tie"},
    }
    result = run_agreement(labels)
    by_pair = {(p.a, p.b): p for p in result["pairs"]}
    assert by_pair[("anna", "eddie")].n == 2 and by_pair[("anna", "eddie")].percent == 100.0
    assert by_pair[("anna", "olivia")].percent == 50.0
    assert by_pair[("eddie", "olivia")].n == 1 and by_pair[("eddie", "olivia")].percent == 0.0
    assert result["n"] == 5 and result["percent"] == pytest.approx(60.0)


def test_agreement_with_steering_counts_how_often_people_preferred_gamma_plus():
    result = steering_agreement(["confirm", "confirm", "confirm", "swap", "tie", "both_bad"])
    assert result["percent"] == pytest.approx(75.0)
    assert (result["tie"], result["both_bad"]) == (1, 1)


def test_the_run_summary_finds_disagreements_for_the_lead(ours, owner, engineer, annotator):
    ours.run.review_k = 2
    ours.run.save()
    pairs = make_pairs(ours.run, 3)
    services.review_assign(run=ours.run, rng=random.Random(3))
    for pair in pairs:
        reviewers = [a.annotator for a in pair.assignments.all()]
        _judge(ours.run, reviewers[0], pair, "confirm")
        _judge(ours.run, reviewers[1], pair, "confirm" if pair is not pairs[1] else "swap")
    summary = selectors.review_summary(run=ours.run)
    assert [r.pair for r in summary["disagreements"]] == [pairs[1]]
    assert summary["unresolved"] == 1
    assert summary["agreement"]["percent"] == pytest.approx(100 * 2 / 3)
    assert summary["steering"]["percent"] == pytest.approx(100 * 5 / 6)


def test_a_stale_resolution_is_refused_and_changes_nothing(ours, owner, annotator, engineer):
    ours.run.review_k = 2
    ours.run.save()
    pair = make_pairs(ours.run, 1)[0]
    services.review_assign(run=ours.run)
    first, second = [a.annotator for a in pair.assignments.all()]
    _judge(ours.run, first, pair, "confirm")
    _judge(ours.run, second, pair, "swap")
    seen = selectors.pair_review_get(pair=pair).version
    _judge(ours.run, first, pair, "tie")  # someone changes their mind while Olivia looks
    with pytest.raises(ValidationError, match="changed"):
        services.pair_resolve(run=ours.run, pair=pair, outcome="swap", based_on_version=seen, user=owner)
    assert not pair.resolutions.exists()
    fresh = selectors.pair_review_get(pair=pair).version
    services.pair_resolve(run=ours.run, pair=pair, outcome="swap", based_on_version=fresh, user=owner)
    assert selectors.pair_review_get(pair=pair).outcome == "swap"


def _gate_setup(ours, orders):
    ours.run.review_k = 1
    ours.run.save()
    pairs = make_pairs(ours.run, len(orders))
    services.review_assign(run=ours.run)
    for pair, order in zip(pairs, orders):
        if order is not None:
            _judge(ours.run, pair.assignments.get().annotator, pair, order)
    return pairs


def test_the_gate_keeps_confirmed_flips_swapped_and_drops_the_rest(ours):
    pairs = _gate_setup(ours, ["confirm", "swap", "tie", "both_bad", "skip", None])
    rows, meta = selectors.dataset_rows(run=ours.run)
    assert [r["verdict"] for r in rows] == ["confirm", "swap"]
    assert rows[0]["chosen"][0]["content"] == pairs[0].chosen
    assert rows[1]["chosen"][0]["content"] == pairs[1].rejected, "a swap flips chosen and rejected"
    assert rows[1]["rejected"][0]["content"] == pairs[1].chosen
    assert meta["kept"] == 2 and meta["total"] == 6
    assert meta["counts"] == {"confirm": 1, "swap": 1, "drop": 2, "pending": 2}


def test_without_required_review_every_pair_passes_and_the_export_says_so(ours):
    ours.run.require_review = False
    ours.run.save()
    pairs = make_pairs(ours.run, 4)
    rows, meta = selectors.dataset_rows(run=ours.run)
    assert len(rows) == 4 and {r["verdict"] for r in rows} == {"not_reviewed"}
    assert rows[0]["chosen"][0]["content"] == pairs[0].chosen
    assert "not required" in meta["note"]


def test_the_audit_log_records_verdicts_undo_edits_and_resolutions(ours, owner, annotator):
    pair = _gate_setup(ours, [None])[0]
    assignment = pair.assignments.get()
    user = assignment.annotator
    services.verdict_submit(run=ours.run, user=user, assignment_id=assignment.pk, choice="left", rationale="clearer")
    services.verdict_undo(run=ours.run, user=user)
    services.pair_edit(run=ours.run, user=user, assignment_id=assignment.pk, side="right", text="Edited.")
    version = selectors.pair_review_get(pair=pair).version
    services.pair_resolve(run=ours.run, pair=pair, outcome="drop", based_on_version=version, user=owner, note="off topic")
    events = [e for e in selectors.audit_list(run=ours.run) if e.pair_id == pair.pk]
    actions = [(e.action, e.actor.get_username()) for e in reversed(events)]
    assert actions == [("verdict", user.get_username()), ("undo", user.get_username()), ("edit", user.get_username()), ("resolve", "olivia")]
    assert events[-1].detail["rationale"] == "clearer"
    assert events[0].detail["note"] == "off topic"
    assert AuditEvent.objects.filter(action="assign").exists()


def test_passing_the_gate_writes_only_the_reviewed_pairs_for_training(ours, owner, settings):
    import json
    from pathlib import Path

    from webapp.review.services import review_finish
    from webapp.studio.models import Run, Stage

    _gate_setup(ours, ["confirm", "swap", "both_bad"])
    ours.run.stages.filter(kind="review").update(status=Stage.Status.RUNNING)
    Run.objects.filter(pk=ours.run.pk).update(status=Run.Status.PAUSED)
    review_finish(run=ours.run)
    stage = ours.run.stages.get(kind="review")
    assert stage.status == Stage.Status.SUCCEEDED
    assert stage.message == "2 of 3 pairs passed review."
    lines = (Path(settings.MEDIA_ROOT) / stage.metrics["dataset_jsonl"]).read_text().splitlines()
    assert [json.loads(line)["verdict"] for line in lines] == ["confirm", "swap"]


def test_the_judge_against_people_figure_is_the_one_computed_by_hand(ours, owner, annotator, client_for):
    """Six pairs, one reviewer each (k=1). People: confirm ×4, swap ×2 (labels C C C C R R).
    Judge verdicts: +, +, +, −, −, + (labels C C C R R C). Agreement 4/6 = 66.7%.
    κ: p_o = 4/6; people C 4/6 R 2/6, judge C 4/6 R 2/6, p_e = (4·4 + 2·2)/36 = 20/36;
    κ = (24/36 − 20/36) / (1 − 20/36) = 4/16 = 0.25."""
    from webapp.jobs.models import Pair

    ours.run.require_review = True
    ours.run.save()
    pairs = make_pairs(ours.run, 6)
    for pair, verdict in zip(pairs, [0.8, 1.0, 0.2, -0.5, -1.0, 0.6]):
        Pair.objects.filter(pk=pair.pk).update(judge_verdict=verdict)
    services.review_assign(run=ours.run)
    for pair, order in zip(pairs, ["confirm", "confirm", "confirm", "confirm", "swap", "swap"]):
        _judge(ours.run, ReviewAssignment.objects.get(pair=pair).annotator, pair, order)
    judge = selectors.review_summary(run=ours.run)["judge"]
    assert judge["n"] == 6 and judge["percent"] == pytest.approx(400 / 6) and judge["kappa"] == pytest.approx(0.25)
    assert [r.pair.pk for r in judge["disagreements"]] == [pairs[3].pk, pairs[5].pk]
    page = client_for(owner).get(f"/runs/{ours.run.pk}/review/agreement/").content.decode()
    assert "Judge against people" in page and "66.7%" in page and "0.25" in page
    assert f'data-judge-disagrees="{pairs[3].pk}"' in page
