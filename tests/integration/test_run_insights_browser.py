"""Every evidence view of a finished run on the embedded model, in headless Chromium, with
screenshots in test-output/screenshots/insights-*.png.

Real processes throughout: daphne, a Celery worker for the runs, a second one on the
``interactive`` queue for the playground, Redis, and the embedded SmolLM2. Two runs with
different settings are made over HTTP; the browser then opens directions, the consistency
filter (moving the threshold), calibration, training, cost, the playground (three streamed
responses) and the side-by-side comparison.
"""
from __future__ import annotations

import time

import pytest

from tests.browser.conftest import SCREENSHOTS, chromium_browser
from tests.integration.conftest import ALIAS
from tests.integration.helpers import INSTRUCTIONS, create_run, demo_project_id, launch
from tests.integration.stack import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1200)]


def _status(run_id: int) -> str | None:
    from webapp.studio.models import Run

    status = Run.objects.using(ALIAS).get(pk=run_id).status
    return status if status in ("succeeded", "failed", "cancelled") else None


@pytest.fixture
def chromium(stack):
    """A logged-in page on the stack's web server."""
    with chromium_browser() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.goto(stack.url("/accounts/login/"))
        page.fill("input[name=username]", "demo")
        page.fill("input[name=password]", "integration-pass-123")
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        yield page


def _open_tab(page, label: str) -> None:
    page.click(f"nav.tabs >> text={label}")
    page.wait_for_load_state()  # htmx binds its triggers once the deferred scripts have run


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"insights-{name}.png"), full_page=True)


def test_each_view_of_a_finished_run_opens_in_a_browser_and_the_playground_streams(stack, demo, chromium):
    # The run worker takes both cores; the playground's worker, started after, one (each reads its env at start).
    stack.env.update(ICON2_CALIBRATION_SAMPLE="4", ICON2_TORCH_THREADS="2", ICON2_EVAL_MAX="6")
    stack.start_worker("w1")
    stack.env.update(ICON2_TORCH_THREADS="1")
    stack.start_worker("playground", queues="interactive")
    # Run A: two dimensions, fixed γ, trained and evaluated. Run B: other settings, γ calibrated; it runs first.
    run_a = create_run(demo, name="Two dimensions", instructions=INSTRUCTIONS, extra_dimensions=("Honesty",),
                       keep_fraction=0.5, max_new_tokens=12)
    run_b = create_run(demo, name="Calibrated", instructions=INSTRUCTIONS, keep_fraction=0.75, max_new_tokens=12,
                       calibrate=True, seed=7, gamma=0.1)
    launch(demo, run_b)
    status_b = wait_for(lambda: _status(run_b), 900, "run B to finish")
    page = chromium
    # Under the Content-Security-Policy (issue 29), on daphne with real sockets: nothing refused.
    refused: list[str] = []
    page.context.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)

    # 5 (live). Run A's training tab is open before A is launched; its curve must arrive over the socket.
    watcher = page.context.new_page()
    watcher.goto(stack.url(f"/runs/{run_a}/training/"))
    watcher.wait_for_selector("#live-indicator:has-text('live')")
    launch(demo, run_a)

    # 4. The playground, while run A keeps the run worker busy: three responses streamed token by
    # token from the interactive worker, done before run A is.
    page.goto(stack.url(f"/runs/{run_b}/playground/"))
    page.fill("textarea[name=instruction]", "Describe your week at work.")
    page.fill("input[name=gamma]", "0.1")
    page.fill("input[name=max_new_tokens]", "24")
    page.click("text=Generate side by side")
    page.wait_for_selector(".probe[data-status=succeeded]", timeout=180_000)
    assert _status(run_a) is None, "the try waited until the run had finished"
    texts = {side: page.locator(f'.probe pre[data-side="{side}"]').inner_text() for side in ("unsteered", "plus", "minus")}
    assert all(texts.values()), texts
    assert len(set(texts.values())) == 3, texts
    assert int(page.locator(".probe").get_attribute("data-updates")) > 3  # arrived piece by piece, not at once
    _shot(page, "playground")

    _wait_js(
        watcher,
        "Number(document.querySelector('#training-live').dataset.steps) >= 1"
        " && document.querySelector('#training-live .badge-running') !== null",
        300,
    )  # a point of the curve, drawn while DPO is still running
    _shot(watcher, "training-live")
    assert wait_for(lambda: _status(run_a), 900, "run A to finish") == "succeeded", stack.log_tail()

    page.goto(stack.url(f"/runs/{run_a}/"))
    page.wait_for_selector("#live-indicator:has-text('live')")
    _shot(page, "overview")

    # 1. Directions: per-layer diagnostics with the band, and cosines between the two dimensions.
    _open_tab(page, "Directions")
    page.wait_for_selector("#directions svg.chart")
    assert page.locator(".diag-dimension").count() == 2
    assert page.locator("#directions tr.in-band").count() == 2 * 8  # layers 8–15, both dimensions
    assert page.locator("#cosines table td").count() == 4
    _shot(page, "directions")

    # 2. The histogram: moving the slider previews another kept count; applying re-filters.
    _open_tab(page, "Consistency filter")
    kept_before = int(page.locator("#preview-kept").inner_text())
    assert kept_before == 6  # half of twelve
    slider = page.locator("#threshold-range")
    low = slider.get_attribute("min")
    page.fill("#threshold-input", low)
    page.dispatch_event("#threshold-input", "input")
    _wait_js(page, "document.querySelector('#preview-kept').textContent.trim() === '12'", 30)
    assert page.locator("#just-below li.muted").count() == 1  # nothing below the lowest score
    _shot(page, "filter")

    # 3. Calibration curves (run B calibrated γ; with four instructions it may find no γ, and says so).
    page.goto(stack.url(f"/runs/{run_b}/calibration/"))
    page.wait_for_selector("#calibration svg.chart")
    assert page.locator("#calibration svg.chart").count() == 3
    if status_b == "succeeded":
        assert page.locator("#calibration tr.picked").count() == 1
    else:
        assert page.locator("#calibration .field-error").count() == 1
    _shot(page, "calibration")

    # 5. Training curves and the evaluation.
    page.goto(stack.url(f"/runs/{run_a}/training/"))
    steps = int(page.locator("#training-live").get_attribute("data-steps"))
    assert steps >= 1 and page.locator("#evaluation .headline").count() == 1
    _shot(page, "training")

    # 6. Cost: compute per stage and the sample-and-rank estimate.
    _open_tab(page, "Cost")
    assert page.locator("#cost tr.estimate").count() == 1
    _shot(page, "cost")

    # 7. The two runs side by side.
    project = demo_project_id(demo)
    page.goto(stack.url(f"/projects/{project}/compare/?runs={run_a}&runs={run_b}"))
    assert page.locator("tr.differs").count() >= 3  # dimensions, keep fraction, seed, γ …
    _shot(page, "compare")
    assert refused == [], refused


def _wait_js(page, expression: str, timeout_s: float) -> None:
    """Poll ``expression`` in the page until it is true. Playwright's wait_for_function evaluates its
    predicate with eval inside the page, which the site's Content-Security-Policy (no 'unsafe-eval')
    refuses; page.evaluate goes through the DevTools protocol, which the policy does not govern."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.evaluate(f"() => Boolean({expression})"):
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for: {expression}")
