"""The run page's one live-update path, in Chromium against Django's live server, which serves no
WebSocket: the socket stays down, so the page says so and #run-live polls its partial (?live=1)
every 4 s while the run works, and stops once it does not. (The socket path itself, a message
and then the same partial, runs against daphne in tests/integration/test_run_insights_browser.py.)"""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from webapp.accounts.services import team_create
from webapp.studio.models import Run, Stage
from webapp.studio.services import dimension_create, model_embedded_ensure, project_create, run_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_with_the_socket_down_a_working_run_polls_its_live_partial(live_server, page):
    olivia = get_user_model().objects.create_user(username="olivia", password="pw-123456789")
    team = team_create(name="Acme", owner=olivia)
    project = project_create(team=team, name="P", description="", created_by=olivia)
    dim = dimension_create(project=project, name="Optimism", pairs=[("You are cheerful.", "You are gloomy.")], created_by=olivia)
    run = run_create(project=project, created_by=olivia, model=model_embedded_ensure(), dimensions=[dim], config={"name": "R"})
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    run.stages.filter(kind="extract").update(status=Stage.Status.RUNNING, progress_total=4, progress_done=1)

    page.clock.install()  # time flows as usual until the end, where the test runs the page's timers itself
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", "pw-123456789")
    page.click("button:has-text('Log in')")
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator("#stage-extract")).to_contain_text("1 / 4")
    expect(page.locator("#live-indicator")).to_have_text("reconnecting… (polling)")

    run.stages.filter(kind="extract").update(progress_done=3, message="Three of four")
    expect(page.locator("#stage-extract")).to_contain_text("3 / 4", timeout=10_000)  # the 4 s poll
    expect(page.locator("#stage-extract")).to_contain_text("Three of four")
    assert page.locator("#settings").count() == 1 and page.locator("#run-live").count() == 1

    Run.objects.filter(pk=run.pk).update(status=Run.Status.PAUSED)  # not working: the next poll is the last
    expect(page.locator("#run-status")).to_have_text("Paused", timeout=10_000)
    run.stages.filter(kind="extract").update(progress_done=4)
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "live=1" in request.url else None)
    page.clock.run_for(12_000)  # three of the 4 s poll's turns, fired now rather than waited for
    page.wait_for_load_state("networkidle")
    assert polls == []  # no poll for a run that waits
    expect(page.locator("#stage-extract")).to_contain_text("3 / 4")
