"""The model check on the web side: adding a model queues its check, the Models page shows what it
found (a base model flagged in plain words, with what to do), a launch on a model whose check failed
is refused with the reason unless the engineer overrides it, and a run on a model of one's own
calibrates γ by default."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from webapp.studio.forms import RunForm
from webapp.studio.model_checks import OVERRIDE_LABEL, model_check_claim, model_check_finish, model_check_latest
from webapp.studio.models import ModelCheck, Run
from webapp.studio.services import model_embedded_ensure, model_update, run_create, run_launch

BASE_MODEL = {
    "ok": False, "source": "/models/llama", "architecture": "LlamaForCausalLM", "model_type": "llama",
    "layers_path": "model.layers", "layers": 16, "hidden_size": 2048, "context_length": 8192,
    "chat_template": False, "system_role": False,
    "bos": {"wants_bos": True, "bos_token": "<s>", "template_writes_bos": False, "prompt_starts_with_bos": True},
    "stop_tokens": ["</s>"], "notes": [], "seconds": 3.1,
    "answers": [{"instruction": f"Request {i}.", "text": "Sure.", "reasons": [], "words": 1, "repetition": 0.0,
                 "distinct2": 1.0, "foreign": 0.0} for i in range(4)],
    "flags": [{"code": "base_model", "message": "it has no chat template, so it is most likely a base model",
               "fix": "use the instruction-tuned (chat, -Instruct, -it) version of this model"}],
}


def _checked(model, result: dict) -> ModelCheck:
    """The model's check, as the worker finishes it."""
    check = model_check_latest(model=model)
    claimed = model_check_claim(check_id=check.pk, worker="w")
    assert model_check_finish(check=claimed, result=result)
    return ModelCheck.objects.get(pk=check.pk)


@pytest.fixture
def llama_run(ours, engineer, settings) -> Run:
    """A draft run on the team's own Local Llama (no model files here: the path checks are off)."""
    settings.ICON2_LAUNCH_CHECKS = False
    return run_create(project=ours.project, created_by=engineer, model=ours.model, dimensions=[ours.dimension],
                      config={"name": "On Llama"})


def test_adding_a_model_queues_its_check_for_the_interactive_worker(ours, engineer, monkeypatch,
                                                                   django_capture_on_commit_callbacks):
    from webapp.jobs import queue
    from webapp.studio.services import model_create

    sent = []
    monkeypatch.setattr(queue, "send_model_check", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        model = model_create(team=ours.team, created_by=engineer, name="Qwen", kind="hub", path_or_id="Qwen/Qwen2-0.5B")
    check = model_check_latest(model=model)
    assert check.status == ModelCheck.Status.QUEUED and sent == [check.pk]


def test_changing_where_a_model_is_loaded_from_checks_it_again(ours, engineer):
    first = _checked(ours.model, BASE_MODEL)
    model_update(model=ours.model, actor=engineer, name="Local Llama")  # same source: no new check
    assert model_check_latest(model=ours.model) == first
    model_update(model=ours.model, actor=engineer, name="Local Llama", path_or_id="/models/llama-instruct")
    assert model_check_latest(model=ours.model).status == ModelCheck.Status.QUEUED


def test_the_models_page_flags_a_base_model_in_plain_words_with_what_to_do(client_for, viewer, ours):
    _checked(ours.model, BASE_MODEL)
    page = client_for(viewer).get(reverse("studio:models")).content.decode()
    assert 'data-model-check="failed"' in page and 'data-flag="base_model"' in page
    assert "A base model, not a chat model." in page and "It has no chat template" in page
    assert "What to do:</strong> Use the instruction-tuned" in page
    for shown in ("LlamaForCausalLM", "model.layers", "2048", "8192", "no — a base model", "wants a BOS", "4 of 4 fluent"):
        assert shown in page, shown


def test_a_launch_on_a_model_whose_check_failed_is_refused_with_the_reason(llama_run, engineer):
    _checked(llama_run.model, BASE_MODEL)
    with pytest.raises(ValidationError) as refused:
        run_launch(run=llama_run, actor=engineer)
    assert "The model check of Local Llama failed: it has no chat template" in str(refused.value)
    assert "what to do: use the instruction-tuned" in str(refused.value) and OVERRIDE_LABEL in str(refused.value)
    assert Run.objects.get(pk=llama_run.pk).status == Run.Status.DRAFT


def test_the_engineer_may_launch_anyway_by_ticking_the_override(client_for, engineer, llama_run):
    _checked(llama_run.model, BASE_MODEL)
    client = client_for(engineer)
    assert OVERRIDE_LABEL in client.get(reverse("studio:run", args=[llama_run.pk])).content.decode()
    client.post(reverse("studio:run_launch", args=[llama_run.pk]))
    assert Run.objects.get(pk=llama_run.pk).status == Run.Status.DRAFT
    client.post(reverse("studio:run_launch", args=[llama_run.pk]), {"override_model_check": "1"})
    assert Run.objects.get(pk=llama_run.pk).status in (Run.Status.QUEUED, Run.Status.RUNNING)


def test_a_launch_on_a_model_never_checked_queues_its_check_and_waits_for_it(llama_run, engineer):
    ModelCheck.objects.all().delete()  # a model added before checks existed
    with pytest.raises(ValidationError, match="has not been checked yet; its check is queued now"):
        run_launch(run=llama_run, actor=engineer)
    assert model_check_latest(model=llama_run.model).status == ModelCheck.Status.QUEUED
    with pytest.raises(ValidationError, match="is still running"):
        run_launch(run=llama_run, actor=engineer)
    _checked(llama_run.model, {**BASE_MODEL, "ok": True, "flags": [], "chat_template": True})
    run_launch(run=llama_run, actor=engineer)
    assert Run.objects.get(pk=llama_run.pk).status in (Run.Status.QUEUED, Run.Status.RUNNING)


def test_a_check_whose_worker_stopped_is_failed_by_the_periodic_check(ours):
    from webapp.jobs.services import jobs_reap

    check = model_check_claim(check_id=model_check_latest(model=ours.model).pk, worker="w")
    ModelCheck.objects.filter(pk=check.pk).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    jobs_reap(stale_after_s=60, resend_after_s=600)
    check.refresh_from_db()
    assert check.status == ModelCheck.Status.FAILED and "check the model again" in check.error


def test_a_new_run_calibrates_by_default_on_any_model_but_the_embedded_one(ours):
    assert RunForm(project=ours.project).initial["calibrate"] is False  # the embedded model is chosen first
    form = RunForm(project=ours.project, initial={"model": ours.model.pk})
    assert form.initial["calibrate"] is True
    assert "On by default for any model other than the embedded one" in form.fields["calibrate"].help_text
    embedded = str(model_embedded_ensure().pk)
    assert form.fields["model"].widget.attrs["data-embedded-models"] == embedded  # the page's script follows the choice
