"""Anna's lead moves the consistency threshold in a real browser: the preview follows the
slider, and applying it re-filters from the stored scores. The run is written the way the
worker writes one (tests/web/finished.py); the full-stack version is
tests/integration/test_run_insights_browser.py."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.web.finished import finish_run
from webapp.accounts.services import team_create
from webapp.studio.services import dimension_create, model_embedded_ensure, project_create, run_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def test_the_preview_follows_the_threshold_and_apply_keeps_the_new_count(live_server, page, screenshot):
    olivia = get_user_model().objects.create_user(username="olivia", password=PASSWORD)
    team = team_create(name="Acme alignment", owner=olivia)
    project = project_create(team=team, name="Support tone", description="", created_by=olivia)
    dim = dimension_create(project=project, name="Optimism", pairs=[("You are cheerful.", "You are gloomy.")], created_by=olivia)
    run = finish_run(run_create(project=project, created_by=olivia, model=model_embedded_ensure(), dimensions=[dim],
                                config={"name": "First run"}))

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Log in')")
    page.goto(f"{live_server.url}/runs/{run.pk}/filter/")
    expect(page.locator("#preview-kept")).to_have_text("5")
    page.fill("#threshold-input", "-0.05")
    expect(page.locator("#preview-kept")).to_have_text("10")
    expect(page.locator("#just-above li").first).to_contain_text("Instruction number 10")
    page.locator("#threshold-range").fill("-1")  # the slider's far left: everything
    expect(page.locator("#preview-kept")).to_have_text("20")
    expect(page.locator("#threshold-input")).to_have_value("-1")
    screenshot("filter-threshold-preview")
    assert run.instructions.filter(kept=True).count() == 5  # previews store nothing
    page.fill("#threshold-input", "-0.05")
    page.once("dialog", lambda dialog: dialog.accept())  # the run has pairs: applying asks first
    page.click("button:has-text('Apply threshold')")
    expect(page.locator(".messages, #messages").first).to_contain_text("10 of 20 instructions kept")
    expect(page.locator("#kept-now")).to_have_text("10")
    assert run.instructions.filter(kept=True).count() == 10
