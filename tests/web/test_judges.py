"""Judges as team objects (issue 13, first part): a page like Models, a run picks its calibration
and evaluation judges, the run page and the dataset card name them, and an API key is write-only."""

from __future__ import annotations

import io
import json

import pytest
from django.urls import reverse

from webapp.studio.models import Judge, Run

from .review_helpers import make_pairs

SECRET = "sk-live-3f9c2a7e-do-not-show"
LLM = {"name": "Helpfulness by Qwen", "kind": "llm", "better": "higher", "base_url": "http://127.0.0.1:8000/v1",
       "model_name": "Qwen2.5-7B-Instruct", "api_key": SECRET, "criterion": "Which answer is more helpful?", "path": ""}


def _content(response) -> str:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return body.decode("utf-8", "replace")


def test_every_team_sees_the_built_in_judges(client_for, viewer, outsider):
    for user in (viewer, outsider):
        page = client_for(user).get(reverse("studio:judges")).content.decode()
        assert "Sentiment (VADER)" in page and "Length: shorter is better" in page and "Formality" in page
        assert "Self: helpful, honest and harmless" in page


def test_eddie_adds_an_llm_judge_whose_key_is_never_shown_again(client_for, engineer, owner, ours):
    client = client_for(engineer)
    response = client.post(reverse("studio:judge_new"), LLM)
    assert response.status_code == 302
    judge = Judge.objects.get(name="Helpfulness by Qwen")
    assert judge.team == ours.team and judge.api_key == SECRET
    edit = client.get(reverse("studio:judge_edit", args=[judge.pk])).content.decode()
    assert SECRET not in edit and "A key is stored" in edit
    # Saving the form again with the key left blank keeps it.
    assert client.post(reverse("studio:judge_edit", args=[judge.pk]), {**LLM, "api_key": "", "name": "Helpful"}).status_code == 302
    judge.refresh_from_db()
    assert judge.name == "Helpful" and judge.api_key == SECRET
    # A run that uses it: no page, no export and no card shows the key.
    Run.objects.filter(pk=ours.run.pk).update(eval_judge=judge, require_review=False)
    make_pairs(ours.run, 2)
    owner_client = client_for(owner)
    pages = [client.get(reverse("studio:judges")), client.get(reverse("studio:run", args=[ours.run.pk]))]
    pages += [owner_client.get(reverse("review:download", args=[ours.run.pk, fmt])) for fmt in ("jsonl", "parquet", "card")]
    for response in pages:
        assert response.status_code == 200
        assert SECRET not in _content(response)
    assert "evaluation: Helpful" in pages[1].content.decode()


def test_victor_the_viewer_cannot_add_or_change_a_judge(client_for, viewer, engineer, ours):
    from webapp.studio.services import judge_create

    judge = judge_create(team=ours.team, created_by=engineer, **LLM)
    client = client_for(viewer)
    assert client.post(reverse("studio:judge_new"), {**LLM, "name": "Mine"}).status_code == 403
    assert client.post(reverse("studio:judge_delete", args=[judge.pk])).status_code == 403
    assert not Judge.objects.filter(name="Mine").exists() and Judge.objects.filter(pk=judge.pk).exists()
    assert b"Add a judge" not in client.get(reverse("studio:judges")).content


def test_oscar_the_outsider_gets_404_for_another_teams_judge(client_for, outsider, engineer, ours):
    from webapp.studio.services import judge_create

    judge = judge_create(team=ours.team, created_by=engineer, **LLM)
    client = client_for(outsider)
    assert client.get(reverse("studio:judge_edit", args=[judge.pk])).status_code == 404
    assert client.post(reverse("studio:judge_delete", args=[judge.pk])).status_code == 404
    assert "Helpfulness by Qwen" not in client.get(reverse("studio:judges")).content.decode()


@pytest.mark.parametrize("change, field, message", [
    ({"base_url": "ftp://127.0.0.1/v1"}, "base_url", "http:// or https://"),
    ({"base_url": "127.0.0.1:8000"}, "base_url", "http:// or https://"),
    ({"criterion": "   "}, "criterion", "Say in words"),
    ({"model_name": ""}, "model_name", "model name"),
    ({"kind": "reward_model", "path": "/etc"}, "path", "not in a model folder"),
    ({"kind": "reward_model", "path": ""}, "path", "folder on the worker machine"),
    ({"name": "Formality"}, "name", "built-in judge"),
    ({"kind": "self", "criterion": ""}, "criterion", "Say in words"),
], ids=["ftp", "no-scheme", "no-criterion", "no-model", "path-outside-roots", "no-path", "builtin-name", "self-no-criterion"])
def test_a_bad_judge_is_refused_naming_its_field_and_nothing_is_saved(client_for, engineer, ours, change, field, message):
    response = client_for(engineer).post(reverse("studio:judge_new"), {**LLM, **change})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Judge.objects.filter(team=ours.team).exists()


def test_a_run_picks_its_judges_and_names_them_on_the_run_page_and_in_the_card(client_for, engineer, owner, ours):
    from webapp.studio.services import judge_create

    llm = judge_create(team=ours.team, created_by=engineer, **LLM)
    concise = Judge.objects.get(name="Length: shorter is better")
    form = client_for(engineer).get(reverse("studio:run_new", args=[ours.project.pk])).content.decode()
    assert "Helpfulness by Qwen" in form and "the site default" in form
    data = {"name": "Judged", "model": ours.run.model_id, "dimensions": [ours.dimension.pk], "instruction_source": "synthesize",
            "n_instructions": 8, "keep_fraction": 0.5, "gamma_plus": 0.08, "gamma_minus": -0.03, "steering_mode": "add",
            "max_new_tokens": 32, "no_repeat_ngram_size": 3, "repetition_penalty": 1.0, "quality_gate": "on",
            "temperature": 1.0, "top_p": 1.0, "seed": 0, "review_k": 1, "dpo_beta": 0.1, "dpo_learning_rate": 0.0002,
            "dpo_epochs": 1, "dpo_batch_size": 4, "dpo_lora_r": 8, "dpo_max_length": 256, "dpo_use_lora": "on",
            "calibrate": "on", "calibration_judge": concise.pk, "eval_judge": llm.pk}
    response = client_for(engineer).post(reverse("studio:run_new", args=[ours.project.pk]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    run = Run.objects.get(name="Judged")
    assert (run.calibration_judge, run.eval_judge) == (concise, llm)
    page = client_for(engineer).get(reverse("studio:run", args=[run.pk])).content.decode()
    assert "calibration: Length: shorter is better" in page and "evaluation: Helpfulness by Qwen" in page
    card = client_for(owner).get(reverse("review:download", args=[run.pk, "card"])).content.decode()
    assert "Calibration: Length: shorter is better" in card and "Evaluation (trained against base): Helpfulness by Qwen" in card


def test_a_run_cannot_use_another_teams_judge(ours, theirs, engineer, outsider):
    from django.core.exceptions import ValidationError

    from webapp.studio.services import judge_create, run_create

    foreign = judge_create(team=theirs.team, created_by=outsider, **LLM)
    with pytest.raises(ValidationError, match="this team's judges"):
        run_create(project=ours.project, created_by=engineer, model=ours.run.model, dimensions=[ours.dimension],
                   config={"name": "Borrowed", "eval_judge": foreign})


def test_the_worker_builds_the_judge_the_run_chose(ours, engineer, settings, tmp_path):
    from icon2engine import ModelLoadError
    from icon2engine.judges import LengthJudge, LLMJudge, OrientedJudge, VaderJudge
    from webapp.studio.services import judge_create
    from worker.stages import run_judge

    run = ours.run
    assert isinstance(run_judge(run, "evaluation"), VaderJudge)  # blank: the site default
    run.eval_judge = judge_create(team=ours.team, created_by=engineer, **LLM)
    judge = run_judge(run, "evaluation")
    assert isinstance(judge, LLMJudge) and judge.api_key == SECRET and judge.model == "Qwen2.5-7B-Instruct"
    assert judge.criterion == "Which answer is more helpful?" and SECRET not in repr(judge.__dict__.get("name"))
    assert judge.protocol == "pairwise"
    run.eval_judge = judge_create(team=ours.team, created_by=engineer, **{**LLM, "name": "Small", "protocol": "scores"})
    assert run_judge(run, "evaluation").protocol == "scores"
    run.calibration_judge = Judge.objects.get(name="Length: shorter is better")
    assert isinstance(run_judge(run, "calibration"), LengthJudge) and run_judge(run, "calibration").shorter
    run.calibration_judge = judge_create(team=ours.team, created_by=engineer, name="Gloom", kind="lexicon", better="lower")
    assert isinstance(run_judge(run, "calibration"), OrientedJudge)
    from icon2engine.judges import SelfJudge
    from tests.engine.conftest import make_tiny_lm

    run.eval_judge = Judge.objects.get(name="Self: helpful, honest and harmless")
    judge = run_judge(run, "evaluation", lm=make_tiny_lm())
    assert isinstance(judge, SelfJudge) and judge.criterion == "helpful, honest and harmless"
    settings.ICON2_MODEL_ROOTS = [tmp_path]
    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    rm = judge_create(team=ours.team, created_by=engineer, name="RM", kind="reward_model", path=str(tmp_path / "rm"))
    Judge.objects.filter(pk=rm.pk).update(path="/etc")  # edited in the database
    run.eval_judge = Judge.objects.get(pk=rm.pk)
    with pytest.raises(ModelLoadError, match="not in a model folder"):
        run_judge(run, "evaluation")


@pytest.mark.parametrize("architectures, says", [
    (["LlamaForCausalLM"], "is not a sequence-classification model (its architectures: LlamaForCausalLM)"),
    (None, "no readable config.json"),
    ("missing", "is not a folder on this server"),
])
def test_a_reward_model_folder_that_cannot_score_answers_is_refused_naming_the_field(
        client_for, engineer, ours, settings, tmp_path, architectures, says):
    settings.ICON2_MODEL_ROOTS = [tmp_path]
    folder = tmp_path / "generator"
    if architectures != "missing":
        folder.mkdir()
        if architectures is not None:
            (folder / "config.json").write_text(json.dumps({"architectures": architectures}))
    data = {**LLM, "name": "RM", "kind": "reward_model", "path": str(folder)}
    response = client_for(engineer).post(reverse("studio:judge_new"), data)
    assert response.status_code == 200 and says in response.content.decode()
    assert not Judge.objects.filter(team=ours.team).exists()
    folder.mkdir(exist_ok=True)  # a real reward model: accepted
    (folder / "config.json").write_text(json.dumps({"architectures": ["DebertaV2ForSequenceClassification"]}))
    assert client_for(engineer).post(reverse("studio:judge_new"), data).status_code == 302


def test_presets_say_how_they_are_measured(ours, engineer):
    from webapp.studio.services import dimension_create_from_preset, judge_create

    optimism = dimension_create_from_preset(project=ours.project, key="optimism", created_by=engineer)
    assert optimism.judge.name == "Sentiment (VADER)"
    general = dimension_create_from_preset(project=ours.project, key="general", created_by=engineer)
    assert general.judge.kind == "self" and general.judge.criterion == "helpful, honest and harmless"
    honesty = dimension_create_from_preset(project=ours.project, key="honesty", created_by=engineer)
    assert honesty.judge.kind == "self" and honesty.judge.team == ours.team and "honest" in honesty.judge.criterion
    endpoint = judge_create(team=ours.team, created_by=engineer, **LLM)  # once the team has an endpoint, it is used
    harmlessness = dimension_create_from_preset(project=ours.project, key="harmlessness", created_by=engineer)
    assert harmlessness.judge == endpoint


def test_a_run_defaults_to_its_dimensions_judge_and_may_pick_another(ours, engineer):
    from webapp.studio.services import dimension_create_from_preset, run_create

    optimism = dimension_create_from_preset(project=ours.project, key="optimism", created_by=engineer)
    run = run_create(project=ours.project, created_by=engineer, model=ours.run.model, dimensions=[optimism],
                     config={"name": "Defaults"})
    assert run.calibration_judge == run.eval_judge == optimism.judge
    formality = Judge.objects.get(name="Formality")
    run = run_create(project=ours.project, created_by=engineer, model=ours.run.model, dimensions=[optimism],
                     config={"name": "Picked", "eval_judge": formality})
    assert run.eval_judge == formality and run.calibration_judge == optimism.judge
    plain = run_create(project=ours.project, created_by=engineer, model=ours.run.model, dimensions=[ours.dimension],
                       config={"name": "Plain"})
    assert plain.eval_judge is None and plain.eval_judge_label.startswith("site default")


def test_eddie_sets_how_a_dimension_is_measured_in_its_editor(client_for, engineer, ours):
    concise = Judge.objects.get(name="Length: shorter is better")
    client = client_for(engineer)
    response = client.post(reverse("studio:dimension_new", args=[ours.project.pk]), {
        "name": "Concise", "positive": ["You answer in one short sentence."], "negative": ["You answer at great length."],
        "judge": concise.pk})
    assert response.status_code == 302
    from webapp.studio.models import Dimension

    dimension = Dimension.objects.get(name="Concise")
    assert dimension.judge == concise
    assert 'selected>Length: shorter is better' in client.get(reverse("studio:dimension", args=[dimension.pk])).content.decode()


# Checked before launch -----------------------------------------------------------------------------


class _Endpoint:
    """A local HTTP server that answers /v1/models with what a test asks for (a stub, for the bad
    answers a real server would not give on purpose)."""

    def __init__(self, status: int, body: bytes):
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.paths.append(self.path)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.paths: list[str] = []
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self):
        self.server.shutdown()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("status, body", [
    (None, b""),
    (500, b"oops"),
    (404, b'{"detail": "Not Found"}'),
    (200, b"<html>not json</html>"),
    (200, b'{"not": "a model list"}'),
], ids=["refused", "error-status", "not-found", "not-json", "not-a-model-list"])
def test_eddie_cannot_launch_a_run_whose_judge_cannot_be_reached(ours, engineer, status, body):
    """Each failure reads the same, so that the launch check cannot tell a closed port from an
    open one (issue 29: it worked as a port scanner)."""
    says = "the judge endpoint did not answer as an OpenAI-compatible server"
    from django.core.exceptions import ValidationError

    from webapp.studio.services import judge_create, run_create, run_launch

    endpoint = _Endpoint(status, body) if status else None
    url = endpoint.url if endpoint else f"http://127.0.0.1:{_free_port()}/v1"
    try:
        judge = judge_create(team=ours.team, created_by=engineer, **{**LLM, "base_url": url})
        run = run_create(project=ours.project, created_by=engineer, model=ours.run.model, dimensions=[ours.dimension],
                         config={"name": "Unreachable", "eval_judge": judge})
        with pytest.raises(ValidationError, match=says) as error:
            run_launch(run=run, actor=engineer)
        assert "evaluation judge Helpfulness by Qwen" in error.value.messages[0]
        assert Run.objects.get(pk=run.pk).status == Run.Status.DRAFT  # nothing queued, nothing lost
        assert not run.stages.exclude(status__in=["pending", "skipped"]).exists()
        assert endpoint is None or endpoint.paths == ["/v1/models"]
    finally:
        if endpoint:
            endpoint.close()


def test_a_reachable_judge_lets_the_run_launch(ours, engineer, django_capture_on_commit_callbacks):
    from webapp.studio.services import judge_create, run_create, run_launch

    endpoint = _Endpoint(200, b'{"object": "list", "data": [{"id": "Qwen2.5-7B-Instruct"}]}')
    try:
        judge = judge_create(team=ours.team, created_by=engineer, **{**LLM, "base_url": endpoint.url})
        run = run_create(project=ours.project, created_by=engineer, model=ours.run.model, dimensions=[ours.dimension],
                         config={"name": "Reachable", "eval_judge": judge})
        with django_capture_on_commit_callbacks(execute=True):
            run_launch(run=run, actor=engineer)
        assert Run.objects.get(pk=run.pk).status in (Run.Status.QUEUED, Run.Status.RUNNING)
    finally:
        endpoint.close()


def test_a_run_whose_model_folder_is_missing_fails_at_launch(ours, engineer, settings, tmp_path):
    from django.core.exceptions import ValidationError

    from webapp.studio.services import model_create, run_create, run_launch

    settings.ICON2_MODEL_ROOTS = [tmp_path]
    model = model_create(team=ours.team, created_by=engineer, name="Gone", kind="local_dir", path_or_id=str(tmp_path / "gone"))
    run = run_create(project=ours.project, created_by=engineer, model=model, dimensions=[ours.dimension], config={"name": "M"})
    with pytest.raises(ValidationError, match="no model folder"):
        run_launch(run=run, actor=engineer)
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "config.json").write_text("{}")
    run_launch(run=run, actor=engineer, override_model_check=True)  # its check never ran here (no worker)
    assert Run.objects.get(pk=run.pk).status in (Run.Status.QUEUED, Run.Status.RUNNING)


def test_the_admin_never_shows_a_judges_key_either(admin_client, ours, engineer):
    from webapp.studio.services import judge_create

    judge = judge_create(team=ours.team, created_by=engineer, **LLM)
    for url in (reverse("admin:studio_judge_changelist"), reverse("admin:studio_judge_change", args=[judge.pk])):
        response = admin_client.get(url)
        assert response.status_code == 200 and SECRET not in response.content.decode()


def test_the_built_in_judges_the_migrations_made_are_the_ones_the_service_restores(db):
    from webapp.studio.services import BUILTIN_JUDGES, judges_builtin_ensure

    made = set(Judge.objects.filter(team=None).values_list("name", "kind", "better", "criterion"))
    assert made == set(BUILTIN_JUDGES)
    Judge.objects.filter(team=None, kind="length").delete()
    judges_builtin_ensure()
    judges_builtin_ensure()
    assert set(Judge.objects.filter(team=None).values_list("name", "kind", "better", "criterion")) == made
