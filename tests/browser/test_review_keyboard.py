"""Anna, in a real browser, reviews ten steered pairs with the keyboard only — one undo and one
edit among them — and every verdict lands in the database mapped back to the right order.
Olivia then opens the agreement and export page. Screenshots: test-output/screenshots/review-*.png."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from webapp.accounts.models import Membership
from webapp.accounts.services import team_create
from webapp.jobs.models import Instruction, Pair
from webapp.review.models import PairEdit, ReviewAssignment, Verdict
from webapp.studio.services import dimension_create, model_embedded_ensure, project_create, run_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
# What Anna means for each pair, in terms of the steering direction; "undo" marks the pair whose
# first verdict she takes back, "edit" the one where she rewrites the left response first.
PLAN = ["confirm", "swap", "tie", "confirm", "both_bad", "confirm", "skip", "swap", "confirm", "confirm"]
UNDO_AT, EDIT_AT = 3, 5


def _world():
    users = get_user_model().objects
    olivia = users.create_user(username="olivia", password=PASSWORD)
    anna = users.create_user(username="anna", password=PASSWORD)
    team = team_create(name="Acme alignment", owner=olivia)
    Membership.objects.create(team=team, user=anna, role="annotator")
    project = project_create(team=team, name="Support tone", description="", created_by=olivia)
    dimension = dimension_create(
        project=project, name="Helpfulness", pairs=[("You are helpful.", "You are unhelpful.")], created_by=olivia
    )
    run = run_create(project=project, created_by=olivia, model=model_embedded_ensure(), dimensions=[dimension],
                     config={"name": "Review run"})
    assignments = []
    for i in range(10):
        instruction = Instruction.objects.create(run=run, index=i, text=f"Question {i}: how do I reset my password?",
                                                 source="synthesized", kept=True, rank=i)
        pair = Pair.objects.create(
            run=run, instruction=instruction, dimension=dimension, gamma_plus=0.05, gamma_minus=-0.05, layers=[10, 11],
            chosen=f"Happy to help! Open Settings, choose Security and click Reset password ({i}).",
            rejected=f"Figure it out yourself; the button is somewhere in Settings ({i}).",
        )
        # Anna alone reviews this run; sides alternate so both mappings are exercised.
        assignments.append(ReviewAssignment.objects.create(pair=pair, annotator=anna, left_is_chosen=(i % 3 != 1)))
    return run, anna, assignments


def _key_for(order: str, left_is_chosen: bool, i: int) -> str:
    if order in ("tie", "both_bad", "skip"):
        return {"tie": "t", "both_bad": "b", "skip": "s"}[order]
    left = (order == "confirm") == left_is_chosen
    # Use both spellings of each shortcut.
    return ("1" if i % 2 else "ArrowLeft") if left else ("2" if i % 2 else "ArrowRight")


def test_anna_reviews_ten_pairs_with_the_keyboard_only(live_server, page, screenshot):
    run, anna, assignments = _world()

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "anna")
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Log in')")
    page.goto(f"{live_server.url}/runs/{run.pk}/review/")
    expect(page.locator("h1")).to_have_text("Review pairs")
    page.evaluate("window.__samePage = true")  # gone if anything reloads the whole page
    instruction = page.locator("[data-instruction]")
    screenshot("review-01-queue")

    for i, (order, assignment) in enumerate(zip(PLAN, assignments)):
        expect(instruction).to_have_text(f"Question {i}: how do I reset my password?")
        if i == EDIT_AT:
            page.keyboard.press("e")
            expect(page.locator("[data-edit-form=left] textarea")).to_be_focused()
            page.keyboard.press("Control+a")
            page.keyboard.type("A rewritten, friendlier answer.")
            screenshot("review-03-editing")
            page.keyboard.press("Control+Enter")
            expect(page.locator(".messages")).to_contain_text("Saved your edit")
            expect(page.locator("[data-text=left]")).to_contain_text("A rewritten, friendlier answer.")
        if i == 0:
            page.keyboard.press("n")
            expect(page.locator("#rationale")).to_be_focused()
            page.keyboard.type("Kinder and it answers the question.")
            page.keyboard.press("Escape")
        if i == UNDO_AT:
            # A wrong verdict first, then undo brings the same pair back.
            page.keyboard.press("t")
            expect(instruction).to_have_text(f"Question {i + 1}: how do I reset my password?")
            page.keyboard.press("u")
            expect(page.locator(".messages")).to_contain_text("Undid your verdict")
            expect(instruction).to_have_text(f"Question {i}: how do I reset my password?")
            screenshot("review-02-after-undo")
        page.keyboard.press(_key_for(order, assignment.left_is_chosen, i))
        expect(page.locator("[data-progress]")).to_have_text(f"{i + 1} of 10 reviewed")

    expect(page.locator("#review-done")).to_contain_text("All done")
    assert page.evaluate("window.__samePage") is True, "every step was an htmx swap, not a page load"
    screenshot("review-04-done")

    standing = {v.assignment.pair_id: v for v in Verdict.objects.filter(voided_at__isnull=True)}
    assert len(standing) == 10
    for order, assignment in zip(PLAN, assignments):
        assert standing[assignment.pair_id].order == order, assignment.pair.instruction.text
    assert standing[assignments[0].pair_id].rationale == "Kinder and it answers the question."
    voided = Verdict.objects.get(voided_at__isnull=False)
    assert voided.assignment == assignments[UNDO_AT] and voided.choice == "tie"
    edit = PairEdit.objects.get()
    edited = assignments[EDIT_AT]
    assert edit.pair_id == edited.pair_id and edit.text == "A rewritten, friendlier answer."
    assert edit.side == ("chosen" if edited.left_is_chosen else "rejected")
    assert edit.original == getattr(edited.pair, edit.side), "the original text is kept"

    # Olivia, the lead, sees the result and the gate on the agreement & export page.
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Log in')")
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.click("text=Agreement & export")
    expect(page.locator("h1")).to_have_text("Agreement & export")
    expect(page.locator("#progress")).to_contain_text("10 / 10")
    expect(page.locator("[data-steering]")).to_have_text("71.4%")  # 5 confirm, 2 swap
    expect(page.locator("#export")).to_contain_text("7 of 10 pairs in the dataset")
    expect(page.locator("#audit")).to_contain_text("Undo")
    screenshot("review-05-agreement-export")
