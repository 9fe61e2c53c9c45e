"""Olivia, in a real browser: logs in, writes a dimension with two prompt pairs, creates a run,
and finds it on her dashboard. Every page is saved as a screenshot under test-output/screenshots/."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from webapp.accounts.services import team_create
from webapp.studio.services import model_embedded_ensure, project_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def test_olivia_creates_a_dimension_and_a_run_and_sees_it_on_her_dashboard(live_server, page, screenshot):
    olivia = get_user_model().objects.create_user(username="olivia", password=PASSWORD)
    team = team_create(name="Acme alignment", owner=olivia)
    project = project_create(team=team, name="Support tone", description="A kinder support bot.", created_by=olivia)
    model_embedded_ensure()

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", PASSWORD)
    screenshot("01-login")
    page.click("button:has-text('Log in')")
    expect(page.locator("h1")).to_have_text("Dashboard")
    screenshot("02-dashboard-empty")

    page.click("text=Support tone")
    expect(page.locator("h1")).to_have_text("Support tone")
    screenshot("03-project")

    page.click("#dimensions >> text=New dimension")
    expect(page.locator("h1")).to_have_text("New dimension")
    page.fill("#id_name", "Optimism")
    page.fill("#id_description", "Cheerful rather than gloomy answers.")
    rows = page.locator(".pair-row")
    rows.nth(0).locator("textarea[name=positive]").fill("You are a cheerful and optimistic assistant.")
    rows.nth(0).locator("textarea[name=negative]").fill("You are a gloomy and pessimistic assistant.")
    page.click("#add-pair")
    expect(rows).to_have_count(2)
    # A one-sided pair is flagged in place as soon as the field is left.
    rows.nth(1).locator("textarea[name=positive]").fill("You are a joyful, upbeat assistant.")
    rows.nth(1).locator("textarea[name=positive]").press("Tab")
    expect(rows.nth(1)).to_contain_text("Write the negative system prompt.")
    screenshot("04-dimension-inline-error")
    rows.nth(1).locator("textarea[name=negative]").fill("You are a miserable, bleak assistant.")
    rows.nth(1).locator("textarea[name=negative]").press("Tab")
    expect(rows.nth(1)).not_to_contain_text("Write the negative system prompt.")
    # Adding and removing a third pair leaves the two we wrote.
    page.click("#add-pair")
    expect(rows).to_have_count(3)
    rows.nth(2).locator("button:has-text('Remove')").click()
    expect(rows).to_have_count(2)
    screenshot("05-dimension-editor")
    page.click("button:has-text('Create dimension')")
    expect(page.locator(".messages")).to_contain_text("Created the dimension Optimism")
    expect(page.locator("#dimensions")).to_contain_text("2 prompt pairs")
    screenshot("06-project-with-dimension")

    page.click("#runs >> text=New run")
    expect(page.locator("h1")).to_have_text("New run")
    page.fill("#id_name", "Browser run")
    page.check("label:has-text('Optimism')")
    screenshot("07-run-form")
    page.click("button:has-text('Create run')")
    expect(page.locator("h1")).to_contain_text("Browser run")
    expect(page.locator("#stages tbody tr")).to_have_count(8)
    screenshot("08-run-draft")
    page.click("button:has-text('Launch')")
    # Without a worker it waits in the queue; with one it may already be running.
    expect(page.locator(".status-line")).to_contain_text(re.compile("Queued — waiting for a worker|Running"))
    screenshot("09-run-queued")

    page.click("nav >> text=Dashboard")
    expect(page.locator("#recent-runs")).to_contain_text("Browser run")
    expect(page.locator("#recent-runs")).to_contain_text(re.compile("Queued|Running|Succeeded|Failed"))
    screenshot("10-dashboard")

    page.click("nav >> text=Team")
    expect(page.locator("h1")).to_have_text("Acme alignment")
    screenshot("11-team-settings")
    assert project.runs.get().dimensions.get().pairs.count() == 2
