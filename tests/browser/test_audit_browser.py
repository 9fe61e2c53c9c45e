"""Olivia, in a real browser, audits a run that waits for review: she presses *Run the audit* on the
Audit tab, the worker's real audit function measures the run's directions and pairs on a real tiny
model, and the tab (polling while the audit runs) shows the verdict, the chart and the tables.
Then she orthogonalises the direction against Sentiment and regenerates; the tab shows before and after.
Screenshots: test-output/screenshots/audit-01-tab.png (docs/screenshot-audit.png), audit-02-remedy.png
(docs/screenshot-audit-remedy.png)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.worker.conftest import tiny  # noqa: F401  (the fixtures)
from tests.worker.test_audit_task import paused_run  # noqa: F401
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

    # The remedy: project Sentiment out of Cheer's direction and regenerate; the tab then shows both audits.
    from tests.worker.test_judge_failure import _drain

    form = page.locator(f"#audit form.remedy:has(input[name=dimension][value='{dim.pk}'])")
    form.locator("input[value=sentiment]").check()
    form.locator("button:has-text('Orthogonalise and regenerate')").click()
    expect(page.locator("[role=status]").first).to_contain_text("Remedy queued")
    remedy = RunAudit.objects.exclude(pk=audit.pk).get(run=run)
    run_audit(remedy.pk)  # orthogonalise; the stages after the filter are queued again
    remedy.refresh_from_db()
    assert remedy.status == RunAudit.Status.WAITING, remedy.error
    page.reload()
    expect(page.locator("#audit")).to_contain_text("Remedy applied")
    _drain(run)  # the run's worker regenerates the pairs; the generate stage queues the audit again
    run_audit(remedy.pk)
    remedy.refresh_from_db()
    assert remedy.status == RunAudit.Status.SUCCEEDED, remedy.error
    expect(page.locator("#audit table.audit-compare")).to_be_visible(timeout=30_000)  # the 10 s poll
    expect(page.locator("#audit table.audit-compare")).to_contain_text("Cosine with Sentiment")
    expect(page.locator("#audit")).to_contain_text("orthogonalised against Sentiment")
    screenshot("audit-02-remedy")
