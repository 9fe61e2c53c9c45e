"""Olivia, in a real browser, audits a run that waits for review: she presses *Run the audit* on the
Audit tab, the worker's real audit function measures the run's directions and pairs on a real tiny
model, and the tab (polling while the audit runs) shows the verdict, the chart and the tables.
Screenshot: test-output/screenshots/audit-01-tab.png (docs/screenshot-audit.png)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.worker.test_audit_task import paused_run  # noqa: F401  (the fixture)
from webapp.jobs.models import RunAudit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_olivia_runs_the_audit_and_reads_it(paused_run, live_server, page, screenshot):  # noqa: F811
    from worker.audit import run_audit

    run, owner, dim = paused_run
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", "pw-123456789")
    page.click("button:has-text('Log in')")
    expect(page.locator("h1")).to_have_text("Dashboard")
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.click("nav.tabs >> text=Audit")
    expect(page.locator("#audit")).to_contain_text("No audit yet")
    page.click("button:has-text('Run the audit')")
    expect(page.locator("#audit [role=status]")).to_contain_text("Audit queued")
    audit = RunAudit.objects.get(run=run)
    run_audit(audit.pk)  # the interactive worker's task, in this process
    audit.refresh_from_db()
    assert audit.status == RunAudit.Status.SUCCEEDED, audit.error
    verdict = audit.result["dimensions"][0]["verdict"]
    expect(page.locator("#audit .verdict")).to_have_text(verdict, timeout=20_000)  # the tab's poll picked it up
    expect(page.locator("#audit svg.chart")).to_be_visible()
    expect(page.locator("#audit table").first).to_contain_text("Sentiment")
    expect(page.locator("#audit")).to_contain_text("Chosen − rejected over 12 pairs")
    expect(page.locator("button:has-text('Audit again')")).to_be_enabled()
    screenshot("audit-01-tab")
