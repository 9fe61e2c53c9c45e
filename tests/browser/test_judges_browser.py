"""Olivia, in a real browser: adds an LLM-endpoint judge on the Judges page, creates a run that
picks it (and a built-in length judge for calibration), and finds both named on the run page
and in the dataset card. Screenshots: test-output/screenshots/judges-*.png."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from webapp.accounts.services import team_create
from webapp.studio.models import Judge, Run
from webapp.studio.services import (dimension_create_from_preset, judges_builtin_ensure, model_embedded_ensure,
                                    project_create)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
SECRET = "sk-browser-secret-0042"


def test_olivia_picks_judges_for_a_run_and_sees_them_on_the_run_page_and_in_the_card(live_server, page, screenshot):
    olivia = get_user_model().objects.create_user(username="olivia", password=PASSWORD)
    team = team_create(name="Acme alignment", owner=olivia)
    project = project_create(team=team, name="Support tone", description="", created_by=olivia)
    dimension_create_from_preset(project=project, key="optimism", created_by=olivia)
    model_embedded_ensure()
    judges_builtin_ensure()  # a transactional test before this one flushed what the migrations made

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Log in')")
    expect(page.locator("h1")).to_have_text("Dashboard")

    page.click("nav >> text=Judges")
    expect(page.locator("h1")).to_have_text("Judges")
    page.click("text=Add a judge")
    page.fill("#id_name", "Cheer by Qwen")
    page.select_option("#id_kind", "llm")
    page.fill("#id_criterion", "Which answer is more cheerful and optimistic?")
    page.fill("#id_base_url", "http://127.0.0.1:8000/v1")
    page.fill("#id_model_name", "qwen2.5-7b-instruct")
    page.fill("#id_api_key", SECRET)
    page.select_option("#id_protocol", "scores")
    screenshot("judges-01-form")
    page.click("button:has-text('Add judge')")
    expect(page.locator("body")).to_contain_text("Cheer by Qwen")
    assert SECRET not in page.content()
    screenshot("judges-02-list")

    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.click("#runs >> text=New run")
    expect(page.locator("h1")).to_have_text("New run")
    page.fill("#id_name", "Judged run")
    page.check("label:has-text('Optimism')")
    page.check("#id_calibrate")
    page.select_option("#id_calibration_judge", label="Length: shorter is better")
    page.select_option("#id_eval_judge", label="Cheer by Qwen")
    screenshot("judges-03-run-form")
    page.click("button:has-text('Create run')")
    expect(page.locator("h1")).to_contain_text("Judged run")
    judges = page.locator("#run-judges")
    expect(judges).to_contain_text("calibration: Length: shorter is better")
    expect(judges).to_contain_text("evaluation: Cheer by Qwen")
    screenshot("judges-04-run-page")

    run = Run.objects.get(name="Judged run")
    assert run.eval_judge == Judge.objects.get(name="Cheer by Qwen") and run.eval_judge.protocol == "scores"
    page.goto(f"{live_server.url}/runs/{run.pk}/review/agreement/")
    with page.expect_download() as download:
        page.click("text=Dataset card")
    card = open(download.value.path(), encoding="utf-8").read()
    assert "- Calibration: Length: shorter is better" in card
    assert "- Evaluation (trained against base): Cheer by Qwen" in card
    assert SECRET not in card
