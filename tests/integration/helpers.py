"""Steps the integration tests share: find the demo project, create and launch a run over HTTP."""
from __future__ import annotations

import re

from tests.integration.stack import Browser, run_id_from_url

INSTRUCTIONS = [
    "Describe a rainy Monday morning.", "Tell me about your neighbour's cat.", "What is a good breakfast?",
    "Describe a ride on a city bus.", "Write a few sentences about autumn.", "What do you think of winter evenings?",
    "Tell me about a normal school day.", "Describe an open-plan office.", "What is it like to wait at an airport?",
    "Write a short note about a family dinner.", "Describe a small town's main street.", "Tell me about doing the laundry.",
]


def demo_project_id(browser: Browser) -> int:
    _, _, html = browser.get("/projects/")
    return int(re.search(r'href="/projects/(\d+)/"', html).group(1))


def create_run(browser: Browser, *, name: str, instructions: list[str] | None, max_new_tokens: int = 8,
               keep_fraction: float = 1.0, dimension: str = "Optimism", n_instructions: int = 8,
               calibrate: bool = False, extra_dimensions: tuple[str, ...] = (), seed: int = 0,
               gamma: float = 0.05) -> int:
    project = demo_project_id(browser)
    path = f"/projects/{project}/runs/new/"
    form = browser.form(path)
    data = {k: v for k, v in form.fields.items()}
    dim_values = [next(v for v, label in form.choices["dimensions"] if label.lower().startswith(d.lower()))
                  for d in (dimension, *extra_dimensions)]
    data.update(
        name=name, instruction_source="upload" if instructions else "synthesize", dimensions=dim_values, seed=str(seed),
        keep_fraction=str(keep_fraction), max_new_tokens=str(max_new_tokens), layer_start="8", layer_end="15",
        gamma_plus=str(gamma), gamma_minus=str(-gamma), n_instructions=str(n_instructions),
    )
    for flag in ("require_review", "calibrate", "do_sample"):
        data.pop(flag, None)
    if calibrate:
        data["calibrate"] = "on"
    files = {"instructions_file": ("list.txt", "\n".join(instructions).encode())} if instructions else None
    status, url, html = browser.post(path, data, files=files)
    assert "/runs/" in url, f"run form refused ({status}): {re.findall(r'field-error[^>]*>([^<]+)', html)}"
    return run_id_from_url(url)


def launch(browser: Browser, run_id: int) -> None:
    status, url, _ = browser.post(f"/runs/{run_id}/launch/", {})
    assert status == 200 and f"/runs/{run_id}/" in url
