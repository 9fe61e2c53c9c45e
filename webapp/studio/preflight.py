"""Checks a run passes before it is queued, so that a missing model or an unreachable judge fails
at launch with its reason instead of minutes later in a model stage.

The web process checks paths on its own file system: in the shipped compose file the model
folders are a volume shared with the workers. Where web and workers do not share them, set
ICON2_LAUNCH_CHECKS=0 (the worker still checks everything again before it loads).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from icon2engine.endpoints import EndpointError, EndpointPolicy, EndpointRefused, request_json
from webapp.studio.model_paths import MODEL_PATH_REFUSED, model_path_allowed
from webapp.studio.models import Judge, ModelSpec, Run

ENDPOINT_TIMEOUT_S = 5.0
# All a launch says about an endpoint that was asked: whether it refused, failed, timed out or
# answered a 404 stays in the server, so the launch check cannot be used to scan a network.
NOT_OPENAI = "the judge endpoint did not answer as an OpenAI-compatible server"


def judge_endpoint_policy(*, timeout: float = ENDPOINT_TIMEOUT_S) -> EndpointPolicy:
    """Where this site's judge requests may go (settings.ICON2_JUDGE_ALLOWED_HOSTS; docs/security.md)."""
    return EndpointPolicy(allowed_hosts=tuple(settings.ICON2_JUDGE_ALLOWED_HOSTS), timeout=timeout)


def endpoint_problem(judge: Judge) -> str | None:
    """Why the judge's OpenAI-compatible endpoint cannot be used, or None: GET {base_url}/models,
    through the one judge client (no redirects, the key only to its own origin), must answer a
    model list."""
    url = judge.base_url.rstrip("/") + "/models"
    try:
        answer = request_json("GET", url, policy=judge_endpoint_policy(), api_key=judge.api_key or None,
                              key_origin=judge.api_key_origin or None)
    except EndpointRefused as refused:  # decided before anything was sent: safe to say why
        return str(refused)
    except EndpointError:
        return NOT_OPENAI
    if not (isinstance(answer, dict) and isinstance(answer.get("data"), list)):
        return NOT_OPENAI
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
        problem = endpoint_problem(judge)
        return f"The {role} judge {judge.name}: {problem.rstrip('.')}." if problem else None
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
