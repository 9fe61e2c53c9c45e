"""Checks a run passes before it is queued, so that a missing model or an unreachable judge fails
at launch with its reason instead of minutes later in a model stage.

The web process checks paths on its own file system: in the shipped compose file the model
folders are a volume shared with the workers. Where web and workers do not share them, set
ICON2_LAUNCH_CHECKS=0 (the worker still checks everything again before it loads).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings

from webapp.studio.model_paths import MODEL_PATH_REFUSED, model_path_allowed
from webapp.studio.models import Judge, ModelSpec, Run

ENDPOINT_TIMEOUT_S = 5.0


def endpoint_problem(base_url: str, api_key: str = "") -> str | None:
    """Why an OpenAI-compatible endpoint cannot be used, or None: GET {base_url}/models must answer JSON."""
    url = base_url.rstrip("/") + "/models"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=ENDPOINT_TIMEOUT_S) as response:  # noqa: S310 (http(s) only, checked)
            body = response.read(1_000_000)
    except urllib.error.HTTPError as error:
        return f"{url} answered HTTP {error.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"{url} is unreachable ({reason})"
    try:
        json.loads(body)
    except ValueError:
        return f"{url} answered with something that is not JSON"
    return None


def _model_problem(model: ModelSpec) -> str | None:
    if model.kind not in (ModelSpec.Kind.LOCAL_DIR, ModelSpec.Kind.GGUF):
        return None
    if not model_path_allowed(model.path_or_id):
        return f"Model {model.name}: {MODEL_PATH_REFUSED}"
    path = Path(model.path_or_id).expanduser()
    if model.kind == ModelSpec.Kind.LOCAL_DIR and not (path / "config.json").is_file():
        return f"Model {model.name}: there is no model folder (with a config.json) at {model.path_or_id}."
    if model.kind == ModelSpec.Kind.GGUF and not path.is_file():
        return f"Model {model.name}: there is no .gguf file at {model.path_or_id}."
    return None


def _judge_problem(judge: Judge, role: str) -> str | None:
    if judge.kind == Judge.Kind.LLM:
        problem = endpoint_problem(judge.base_url, judge.api_key)
        return f"The {role} judge {judge.name}: {problem}." if problem else None
    if judge.kind == Judge.Kind.REWARD_MODEL:
        if not model_path_allowed(judge.path):
            return f"The {role} judge {judge.name}: {MODEL_PATH_REFUSED}"
        if not (Path(judge.path).expanduser() / "config.json").is_file():
            return f"The {role} judge {judge.name}: there is no model folder (with a config.json) at {judge.path}."
    return None


def run_launch_problems(run: Run) -> list[str]:
    """Every reason this run cannot start now (empty when it can)."""
    if not settings.ICON2_LAUNCH_CHECKS:
        return []
    problems = [_model_problem(run.model)]
    if run.calibrate and run.calibration_judge_id:
        problems.append(_judge_problem(run.calibration_judge, "calibration"))
    if run.eval_judge_id:
        problems.append(_judge_problem(run.eval_judge, "evaluation"))
    return [p for p in problems if p]
