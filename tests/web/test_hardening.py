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
