"""The model check task in-process (no broker): the worker loads the team's model, checks it and
stores what it found on the check's row; a model that is not there fails the check with the loader's
reason; a redelivered message does nothing twice."""
from __future__ import annotations

import json

from webapp.studio.model_checks import model_check_latest, model_check_problem, model_check_request
from webapp.studio.models import ModelCheck
from webapp.studio.services import model_create


def test_checking_the_tiny_model_stores_what_it_is_and_its_four_answers(tiny):
    from worker.model_check import run_model_check

    owner, project, dim, model = tiny
    check = model_check_request(model=model, actor=owner, again=True)
    run_model_check(check.pk)
    check.refresh_from_db()
    assert check.status == ModelCheck.Status.SUCCEEDED, check.error
    found = check.result
    assert json.loads(json.dumps(found, allow_nan=False)) == found  # small, strict JSON
    assert (found["architecture"], found["layers_path"], found["layers"], found["hidden_size"]) == (
        "LlamaForCausalLM", "model.layers", 4, 64)
    assert found["chat_template"] is True and set(found["bos"]) >= {"wants_bos", "prompt_starts_with_bos"}
    assert len(found["answers"]) == 4 and found["source"] == model.path_or_id
    # Random weights answer noise: the check says so, and a launch would be refused for that reason.
    assert [f["code"] for f in found["flags"]] == ["degenerate_answers"] and not check.passed
    assert model_check_latest(model=model) == check
    assert "its own answers are degenerate before any steering" in model_check_problem(model=model)
    run_model_check(check.pk)  # a redelivered message finds it finished and does nothing
    assert ModelCheck.objects.get(pk=check.pk).finished_at == check.finished_at


def test_a_model_that_is_not_there_fails_its_check_with_the_reason(tiny, tmp_path):
    from worker.model_check import run_model_check

    owner, project, dim, _ = tiny
    gone = model_create(team=project.team, created_by=owner, name="Gone", kind="local_dir", path_or_id=str(tmp_path / "gone"))
    check = model_check_latest(model=gone)
    run_model_check(check.pk)
    check.refresh_from_db()
    assert check.status == ModelCheck.Status.FAILED and "does not exist" in check.error and "Traceback" not in check.error
    assert model_check_problem(model=gone).startswith("The model check of Gone could not run:")
