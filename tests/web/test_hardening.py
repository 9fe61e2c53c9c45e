"""Issue 14: what an outsider, an annotator, a viewer and an engineer could break, each fixed."""

from __future__ import annotations

import pytest
from django.urls import reverse

from .conftest import PASSWORD


# Login throttling (django-axes) ----------------------------------------------------------------


@pytest.mark.parametrize("url", ["login", "admin:login"])
def test_an_outsider_guessing_passwords_is_locked_out_and_so_is_the_right_one(client, owner, settings, url):
    settings.AXES_FAILURE_LIMIT = 5
    for _ in range(4):
        response = client.post(reverse(url), {"username": "olivia", "password": "guess"})
        assert response.status_code == 200
    for _ in range(26):  # the 5th wrong password locks; the rest are refused without a look at the password
        response = client.post(reverse(url), {"username": "olivia", "password": "guess"})
        assert response.status_code == 429
    assert b"Too many wrong passwords" in response.content and b"15 minutes" in response.content
    response = client.post(reverse(url), {"username": "olivia", "password": PASSWORD})
    assert response.status_code == 429 and "_auth_user_id" not in client.session


def test_olivia_is_not_locked_out_by_a_few_typos(client, owner):
    for _ in range(3):
        client.post(reverse("login"), {"username": "olivia", "password": "typo"})
    response = client.post(reverse("login"), {"username": "olivia", "password": PASSWORD})
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(owner.pk)
    client.post(reverse("logout"))
    for _ in range(3):  # the success reset the count
        client.post(reverse("login"), {"username": "olivia", "password": "typo"})
    assert client.post(reverse("login"), {"username": "olivia", "password": "typo"}).status_code == 200


# Model paths confined to ICON2_MODEL_ROOTS ------------------------------------------------------


def _register(client, path: str, kind: str = "local_dir"):
    return client.post(reverse("studio:model_new"), {"name": "Probe", "kind": kind, "path_or_id": path})


def test_outsider_cannot_load_a_model_from_another_teams_run(client_for, outsider, ours, settings, tmp_path):
    from webapp.studio.model_paths import MODEL_PATH_REFUSED
    from webapp.studio.models import ModelSpec

    settings.ICON2_MODEL_ROOTS = [tmp_path / "models", settings.MEDIA_ROOT.parent]  # even a root above MEDIA_ROOT
    run_dir = settings.MEDIA_ROOT / "teams" / str(ours.team.pk) / "runs" / str(ours.run.pk)
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "config.json").write_text("{}")
    (run_dir / "weights.gguf").write_text("x")
    (tmp_path / "models").mkdir()
    client = client_for(outsider)
    refused = [
        (str(run_dir / "adapter"), "local_dir"),  # another team's trained adapter, a real model folder
        (str(run_dir / "weights.gguf"), "gguf"),
        (str(tmp_path / "models" / ".." / "media" / "teams"), "local_dir"),  # `..` out of a root
        ("/etc", "local_dir"),  # exists, a directory, no config.json
        ("/etc/passwd.gguf", "gguf"),  # does not exist
        ("models/relative", "local_dir"),
        ("~/../../etc", "local_dir"),
    ]
    for path, kind in refused:
        response = _register(client, path, kind)
        assert response.status_code == 200, path
        errors = response.content.decode().split('id="path_or_id-errors"', 1)[1][:400]
        assert MODEL_PATH_REFUSED.split(".")[0] in errors, path
        for leak in ("exist", "directory but", "config.json", "is a file"):
            assert leak not in errors, (path, leak)
    assert not ModelSpec.objects.filter(name="Probe").exists()


def test_outsider_cannot_escape_a_model_root_through_a_symlink(client_for, outsider, ours, settings, tmp_path):
    settings.ICON2_MODEL_ROOTS = [tmp_path / "models"]
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "link").symlink_to(settings.MEDIA_ROOT.parent)
    response = _register(client_for(outsider), str(tmp_path / "models" / "link" / "media"))
    assert b"not in a model folder this server allows" in response.content


def test_eddie_registers_a_model_under_an_allowed_root(client_for, engineer, ours, settings, tmp_path):
    from webapp.studio.models import ModelSpec

    settings.ICON2_MODEL_ROOTS = [tmp_path / "models"]
    response = _register(client_for(engineer), str(tmp_path / "models" / "llama-3-8b"))
    assert response.status_code == 302
    assert ModelSpec.objects.get(name="Probe").team == ours.team


def test_the_worker_refuses_a_model_path_edited_into_the_database(ours, settings):
    from icon2engine import ModelLoadError
    from webapp.studio.model_paths import MODEL_PATH_REFUSED
    from webapp.studio.models import ModelSpec
    from worker.model_cache import engine_spec, get_model

    ModelSpec.objects.filter(pk=ours.model.pk).update(path_or_id=str(settings.MEDIA_ROOT / "teams"))
    ours.model.refresh_from_db()
    with pytest.raises(ModelLoadError, match="not in a model folder"):
        get_model(ours.model)
    ModelSpec.objects.filter(pk=ours.model.pk).update(kind="gguf", path_or_id="/etc/hosts.gguf")
    ours.model.refresh_from_db()
    with pytest.raises(ModelLoadError) as error:
        engine_spec(ours.model)
    assert str(error.value) == MODEL_PATH_REFUSED


def test_the_worker_never_loads_a_hub_id_that_names_a_local_folder(tmp_path, monkeypatch):
    from icon2engine import ModelLoadError, ModelSpec, load_model

    (tmp_path / "var" / "media").mkdir(parents=True)
    (tmp_path / "var" / "media" / "config.json").write_text('{"model_type": "llama"}')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match="could not load 'var/media'"):
        load_model(ModelSpec(source="var/media", hub_only=True))


# A cancelled run stays cancelled ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["review", "extract", "generate"])
def test_eddie_cannot_revive_a_cancelled_run_by_posting_retry(client_for, engineer, ours, kind, django_capture_on_commit_callbacks):
    from webapp.studio.models import Run, Stage
    from webapp.studio.services import run_cancel, run_launch

    Run.objects.filter(pk=ours.run.pk).update(require_review=True)
    ours.run.stages.filter(kind="review").update(status=Stage.Status.PENDING)
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=ours.run, actor=engineer)
    ours.run.stages.filter(kind="extract").update(status=Stage.Status.FAILED, error="boom")
    run_cancel(run=ours.run, actor=engineer)
    before = dict(ours.run.stages.values_list("kind", "status"))
    response = client_for(engineer).post(reverse("jobs:stage_retry", args=[ours.run.pk, kind]), follow=True)
    assert response.status_code == 200
    assert "cancelled; it cannot be retried" in response.content.decode()
    assert Run.objects.get(pk=ours.run.pk).status == Run.Status.CANCELLED
    assert dict(ours.run.stages.values_list("kind", "status")) == before
    assert b"Retry extract" not in response.content


def test_only_a_failed_stage_can_be_retried(ours, engineer, django_capture_on_commit_callbacks):
    from django.core.exceptions import ValidationError

    from webapp.jobs.services import stage_retry
    from webapp.studio.models import Stage
    from webapp.studio.services import run_launch

    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=ours.run, actor=engineer)
    for status in (Stage.Status.CANCELLED, Stage.Status.SUCCEEDED, Stage.Status.QUEUED):
        ours.run.stages.filter(kind="generate").update(status=status)
        with pytest.raises(ValidationError, match="Only a failed stage"):
            stage_retry(stage=ours.run.stages.get(kind="generate"))


# Six requests that returned 500 -----------------------------------------------------------------


def test_outsider_uploading_deeply_nested_jsonl_gets_a_message_not_a_500(client_for, engineer, ours):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("deep.jsonl", b"[" * 200_000 + b"]" * 200_000 + b"\n")
    response = client_for(engineer).post(
        reverse("studio:run_new", args=[ours.project.pk]),
        {"name": "Deep", "model": ours.run.model_id, "dimensions": [ours.dimension.pk], "instruction_source": "upload",
         "instructions_file": upload},
    )
    assert response.status_code in (200, 400)
    assert "nested too deeply" in response.content.decode()


@pytest.mark.parametrize("big", ["9223372036854775808", "99999999999999999999999999"])
def test_an_id_beyond_the_integer_range_is_not_found_not_a_500(client_for, owner, ours, big):
    client = client_for(owner)
    for url in (f"/accounts/teams/{big}/", f"/accounts/teams/{big}/invites/", f"/runs/{big}/",
                f"/projects/{ours.project.pk}/compare/?runs={big}&runs={ours.run.pk}"):
        assert client.get(url).status_code == 404, url
    response = client.post(reverse("accounts:team_switch"), {"team": big})
    assert response.status_code == 302  # ignored, back to the dashboard
    response = client.post(f"/accounts/teams/{ours.team.pk}/invites/{big}/revoke/")
    assert response.status_code == 404


# Limits and silent acceptance --------------------------------------------------------------------


def test_eddie_cannot_save_a_project_name_or_description_past_its_limit(client_for, engineer, ours):
    from django.core.exceptions import ValidationError

    from webapp.limits import DESCRIPTION_MAX, NAME_MAX
    from webapp.studio.services import project_create

    response = client_for(engineer).post(reverse("studio:project_new"), {"name": "x" * (NAME_MAX + 1), "description": ""})
    assert response.status_code in (200, 400) and "at most 120 characters" in response.content.decode()
    with pytest.raises(ValidationError, match="limit is 2,000"):
        project_create(team=ours.team, name="Long", description="d" * (DESCRIPTION_MAX + 1), created_by=engineer)
    with pytest.raises(ValidationError, match="limit is 120"):
        project_create(team=ours.team, name="n" * (NAME_MAX + 1), created_by=engineer)


def test_eddie_cannot_save_a_system_prompt_past_its_limit_or_with_a_nul_byte(ours, engineer):
    from django.core.exceptions import ValidationError

    from webapp.limits import PROMPT_MAX
    from webapp.studio.services import dimension_create, pairs_validate

    assert "limit is 4,000" in pairs_validate([("p" * (PROMPT_MAX + 1), "negative")])[0]["positive"]
    assert "NUL" in pairs_validate([("positive", "neg\x00ative")])[0]["negative"]
    with pytest.raises(ValidationError):
        dimension_create(project=ours.project, name="Long", pairs=[("p" * (PROMPT_MAX + 1), "n")], created_by=engineer)


@pytest.mark.parametrize("field", ["name", "description"])
def test_a_nul_byte_is_refused_by_services_too(ours, engineer, field):
    from django.core.exceptions import ValidationError

    from webapp.studio.services import project_create

    values = {"name": "Fine", "description": ""} | {field: "bad\x00value"}
    with pytest.raises(ValidationError, match="NUL"):
        project_create(team=ours.team, created_by=engineer, **values)


def test_anna_cannot_send_a_rationale_past_its_limit(ours, annotator):
    from django.core.exceptions import ValidationError

    from webapp.limits import RATIONALE_MAX
    from webapp.review import services
    from webapp.review.models import ReviewAssignment, Verdict

    from .review_helpers import make_pairs

    make_pairs(ours.run, 1)
    services.review_assign(run=ours.run)
    assignment = ReviewAssignment.objects.filter(annotator=annotator).first() or ReviewAssignment.objects.first()
    with pytest.raises(ValidationError, match="limit is 2,000"):
        services.verdict_submit(run=ours.run, user=assignment.annotator, assignment_id=assignment.pk, choice="left",
                                rationale="r" * (RATIONALE_MAX + 1))
    assert not Verdict.objects.exists()


def _upload_run(engineer, ours, name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from webapp.studio.services import run_create

    return run_create(project=ours.project, created_by=engineer, model=ours.run.model, dimensions=[ours.dimension],
                      config={"name": name, "instruction_source": "upload",
                              "instructions_file": SimpleUploadedFile(name, data)})


def test_eddie_cannot_upload_more_instructions_than_a_run_takes(ours, engineer):
    from django.core.exceptions import ValidationError

    from webapp.studio.models import Run

    with pytest.raises(ValidationError, match="has 1,000,001 instructions; a run takes at most 1,000,000"):
        _upload_run(engineer, ours, "many.txt", b"x\n" * 1_000_001)
    assert not Run.objects.filter(name="many.txt").exists()
    run = _upload_run(engineer, ours, "ten.txt", "".join(f"Instruction {i}\n" for i in range(10)).encode())
    assert run.n_instructions == 10


def test_a_csv_with_an_unbalanced_quote_is_refused_at_the_line_it_opens(ours, engineer):
    from django.core.exceptions import ValidationError

    data = b'instruction\nWrite a poem.\n"Explain DNS, briefly.\nSummarise this.\nTranslate that.\n'
    with pytest.raises(ValidationError, match="Line 3: a quoted field starts here and never ends"):
        _upload_run(engineer, ours, "quote.csv", data)


def test_an_uploaded_instruction_with_a_nul_byte_is_refused(ours, engineer):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="Line 2: contains a NUL"):
        _upload_run(engineer, ours, "nul.txt", b"fine\nbad\x00one\n")


def test_three_positive_prompts_with_one_negative_are_refused_not_trimmed(client_for, engineer, ours):
    from webapp.studio.models import Dimension

    response = client_for(engineer).post(
        reverse("studio:dimension_new", args=[ours.project.pk]),
        {"name": "Warmth", "positive": ["You are warm.", "You are kind.", "You are caring."], "negative": ["You are cold."]},
    )
    assert response.status_code in (200, 400)
    assert response.content.decode().count("Write the negative system prompt") == 2
    assert not Dimension.objects.filter(name="Warmth").exists()


@pytest.mark.parametrize("layers", ["0", "1000000000000"])
def test_a_model_with_an_impossible_layer_count_is_refused(client_for, engineer, ours, layers):
    response = client_for(engineer).post(
        reverse("studio:model_new"), {"name": "L", "kind": "local_dir", "path_or_id": "/models/l", "num_layers": layers}
    )
    assert 'id="num_layers-errors"' in response.content.decode()


# Smaller holes ------------------------------------------------------------------------------------


def test_oscar_revoking_olivias_token_gets_404_and_the_token_stays(client_for, owner, outsider, ours):
    from webapp.review.models import ApiToken
    from webapp.review.services import api_token_create

    api_token_create(user=owner, name="trainer")
    token = ApiToken.objects.get(user=owner)
    response = client_for(outsider).post(reverse("review:api_token_revoke", args=[token.pk]))
    assert response.status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_a_used_invite_shows_no_team_name_and_a_second_signup_creates_no_account(client, owner, ours):
    from django.contrib.auth import get_user_model

    from webapp.accounts.services import invite_create

    invite = invite_create(team=ours.team, role="annotator", created_by=owner)
    url = reverse("accounts:invite", args=[invite.token])
    form = {"password1": "a-long-new-password-42", "password2": "a-long-new-password-42"}
    first, second = client.__class__(), client.__class__()
    page = second.get(url)  # the second newcomer opened the page before the first joined
    assert page.status_code == 200
    assert first.post(url, {"username": "newcomer1", **form}).status_code == 302
    response = second.post(url, {"username": "newcomer2", **form})
    assert response.status_code == 410
    assert ours.team.name not in response.content.decode()
    assert not get_user_model().objects.filter(username="newcomer2").exists()
    assert ours.team.name not in client.get(url).content.decode()


def test_anna_cannot_unblind_herself_in_the_playground_while_she_reviews(client_for, annotator, engineer, ours):
    from webapp.jobs.probes import playground_blinded
    from webapp.studio.models import Stage

    ours.run.stages.filter(kind="review").update(status=Stage.Status.RUNNING)
    anna = client_for(annotator)
    data = {"instruction": "Instruction 0: explain topic 0.", "dimension": ours.dimension.pk, "gamma": "0.05",
            "max_new_tokens": "8"}
    assert anna.post(reverse("jobs:run_playground", args=[ours.run.pk]), data).status_code == 403
    assert anna.get(reverse("jobs:run_playground", args=[ours.run.pk])).status_code == 403
    assert b"Playground</a>" not in anna.get(reverse("studio:run", args=[ours.run.pk])).content
    assert playground_blinded(user=annotator, run=ours.run)
    assert not playground_blinded(user=engineer, run=ours.run)  # engineers see the steering; they do not review blind
    assert client_for(engineer).get(reverse("jobs:run_playground", args=[ours.run.pk])).status_code == 200
    ours.run.stages.filter(kind="review").update(status=Stage.Status.SUCCEEDED)
    assert anna.get(reverse("jobs:run_playground", args=[ours.run.pk])).status_code == 200


def test_annas_probe_socket_is_closed_while_she_reviews(annotator, engineer, ours):
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from webapp.jobs.consumers import ProbeConsumer
    from webapp.jobs.models import Probe
    from webapp.studio.models import Stage

    probe = Probe.objects.create(run=ours.run, created_by=engineer, dimension=ours.dimension,
                                 instruction="Instruction 0: explain topic 0.", gamma=0.05, max_new_tokens=8)
    ours.run.stages.filter(kind="review").update(status=Stage.Status.RUNNING)

    async def connect():
        communicator = WebsocketCommunicator(ProbeConsumer.as_asgi(), f"/ws/probes/{probe.pk}/")
        communicator.scope["user"] = annotator
        communicator.scope["url_route"] = {"kwargs": {"pk": probe.pk}}
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(connect)() is False


@pytest.mark.skipif("postgres" not in __import__("os").environ.get("DATABASE_URL", ""),
                    reason="row locks need PostgreSQL (CI runs it); SQLite serialises every write anyway")
def test_two_verdicts_anna_sends_at_once_leave_one_standing(transactional_db, ours, annotator, monkeypatch):
    import threading
    import time

    from django.db import connection

    from webapp.review import services
    from webapp.review.models import ReviewAssignment, Verdict

    from .review_helpers import make_pairs

    make_pairs(ours.run, 1)
    services.review_assign(run=ours.run)
    assignment = ReviewAssignment.objects.get(annotator=annotator)
    real_order_of = services._order_of

    def slow_order_of(*args, **kwargs):  # widen the window between voiding and creating
        time.sleep(0.3)
        return real_order_of(*args, **kwargs)

    monkeypatch.setattr(services, "_order_of", slow_order_of)
    barrier, errors = threading.Barrier(2), []

    def submit(choice):
        try:
            barrier.wait()
            services.verdict_submit(run=ours.run, user=annotator, assignment_id=assignment.pk, choice=choice)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(choice,)) for choice in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert Verdict.objects.filter(assignment=assignment).count() == 2
    assert Verdict.objects.filter(assignment=assignment, voided_at__isnull=True).count() == 1
