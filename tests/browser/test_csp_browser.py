"""With the Content-Security-Policy on (issue 29), the pages that run scripts still work in
Chromium and the browser reports no violation: a working run's page updates itself, review
keys record verdicts, and the playground shows a try as it streams.

Django's live server serves no WebSocket. The run page therefore really tries its socket (so
the policy's connect-src is checked against a ws:// address) and polls; the playground's socket
is answered by Playwright (page.route_web_socket) with the messages a worker sends.
"""
from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from webapp.accounts.services import team_create
from webapp.jobs.models import Instruction, Pair, Probe
from webapp.review.models import ReviewAssignment, Verdict
from webapp.studio.models import Run, Stage
from webapp.studio.services import dimension_create, model_embedded_ensure, project_create, run_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-123456789"
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def _world():
    olivia = get_user_model().objects.create_user(username="olivia", password=PASSWORD)
    team = team_create(name="Acme", owner=olivia)
    project = project_create(team=team, name="P", description="", created_by=olivia)
    dim = dimension_create(project=project, name="Optimism", pairs=[("You are cheerful.", "You are gloomy.")], created_by=olivia)
    run = run_create(project=project, created_by=olivia, model=model_embedded_ensure(), dimensions=[dim], config={"name": "R"})
    for i in range(2):
        instruction = Instruction.objects.create(run=run, index=i, text=f"Question {i}", source="synthesized", kept=True, rank=i)
        pair = Pair.objects.create(run=run, instruction=instruction, dimension=dim, gamma_plus=0.05, gamma_minus=-0.05,
                                   layers=[10, 11], chosen=f"Glad to help ({i}).", rejected=f"Whatever ({i}).")
        ReviewAssignment.objects.create(pair=pair, annotator=olivia, left_is_chosen=True)
    return olivia, run, dim


def test_with_the_policy_on_the_run_page_goes_live_review_keys_work_and_the_playground_streams(live_server, page):
    olivia, run, dim = _world()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.add_init_script(WATCH)

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Log in')")

    # A working run: the page tries its socket (allowed by connect-src 'self'), then polls its partial.
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    run.stages.filter(kind="extract").update(status=Stage.Status.RUNNING, progress_total=4, progress_done=1)
    response = page.goto(f"{live_server.url}/runs/{run.pk}/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy and "no-store" in response.headers["cache-control"]
    expect(page.locator("#stage-extract")).to_contain_text("1 / 4")
    run.stages.filter(kind="extract").update(progress_done=3)
    expect(page.locator("#stage-extract")).to_contain_text("3 / 4", timeout=10_000)

    assert page.evaluate("window.__csp") == []

    # Review keys: "1" picks the left answer; the next pair comes in without a reload.
    page.goto(f"{live_server.url}/runs/{run.pk}/review/")
    expect(page.locator("[data-instruction]")).to_have_text("Question 0")
    page.keyboard.press("1")
    expect(page.locator("[data-progress]")).to_have_text("1 of 2 reviewed")
    assert Verdict.objects.filter(assignment__annotator=olivia).count() == 1

    assert page.evaluate("window.__csp") == []

    # The playground: the try's panel grows with each message from its socket.
    probe = Probe.objects.create(run=run, created_by=olivia, dimension=dim, instruction="Describe your week.",
                                 gamma=0.05, max_new_tokens=8, status=Probe.Status.RUNNING)
    steps = [{"status": "running", "outputs": {"unsteered": "My", "plus": "A", "minus": "Ugh"}},
             {"status": "running", "outputs": {"unsteered": "My week", "plus": "A great", "minus": "Ugh, long"}},
             {"status": "succeeded", "outputs": {"unsteered": "My week was fine.", "plus": "A great week!",
                                                 "minus": "Ugh, long week."}}]

    def serve(ws) -> None:
        for step in steps:
            ws.send(json.dumps(step))

    page.route_web_socket(f"**/ws/probes/{probe.pk}/", serve)
    page.goto(f"{live_server.url}/probes/{probe.pk}/")
    expect(page.locator(".probe")).to_have_attribute("data-status", "succeeded")
    expect(page.locator('.probe pre[data-side="plus"]')).to_have_text("A great week!")
    assert int(page.locator(".probe").get_attribute("data-updates")) >= 3 * 2  # piece by piece, each side

    violations = page.evaluate("window.__csp")
    assert violations == [], violations
    assert not [text for text in console if "Content Security Policy" in text], console
