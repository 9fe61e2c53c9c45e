"""Run one model check: claim it, load the model, run icon2engine.model_check, store its JSON.

A model whose decoder blocks cannot be found gets a failed check (blocks_not_found), not an error;
a model that cannot be loaded at all fails the job with the loader's reason."""
from __future__ import annotations

import math


def run_model_check(check_id: int) -> None:
    from webapp.studio import model_checks
    from worker.runner import run_claimed

    run_claimed("model check", check_id,
                claim=lambda pk, worker: model_checks.model_check_claim(check_id=pk, worker=worker),
                heartbeat=lambda check: model_checks.model_check_heartbeat(check=check),
                fail=lambda check, error: model_checks.model_check_fail(check=check, error=error), body=_check)


def json_safe(value):
    """The check's dict with every non-finite float as None (JSON columns refuse NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _check(check) -> None:
    from icon2engine import LayerDetectionError
    from icon2engine.model_check import blocks_not_found, check_model
    from webapp.studio import model_checks
    from worker.model_cache import engine_spec, get_model

    source = engine_spec(check.model).source
    try:
        lm = get_model(check.model)
    except LayerDetectionError as exc:
        found = blocks_not_found(source, exc)
    else:
        model_checks.model_check_progress(check=check, message="answering four requests unsteered")
        found = check_model(lm)
        found.source = source
    model_checks.model_check_finish(check=check, result=json_safe(found.as_dict()))
