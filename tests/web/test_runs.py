"""Runs: created as drafts with their eight stages, validated field by field, launched by engineers."""

from __future__ import annotations

import math

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from webapp.studio.models import Run, Stage
from webapp.studio.services import model_embedded_ensure, run_create, run_launch

from .walk import run_form_data


def _create(client, world, **overrides):
    return client.post(reverse("studio:run_new", args=[world.project.pk]), run_form_data(world, **overrides))


def _stages(run) -> dict[str, str]:
    return dict(run.stages.order_by("order").values_list("kind", "status"))


def test_eddie_creates_a_draft_run_with_eight_stages_in_order(client_for, engineer, ours):
    response = _create(client_for(engineer), ours, name="Tone pass")
    run = Run.objects.get(name="Tone pass")
    assert response["Location"] == reverse("studio:run", args=[run.pk])
    assert run.status == "draft" and run.created_by == engineer
    assert list(run.stages.order_by("order").values_list("kind", flat=True)) == [
        "extract", "synthesize", "filter", "calibrate", "generate", "review", "train", "evaluate",
    ]
    assert _stages(run)["calibrate"] == "skipped" and _stages(run)["synthesize"] == "pending"


def test_the_form_offers_small_run_defaults_and_explains_them(client_for, engineer, ours):
    content = client_for(engineer).get(reverse("studio:run_new", args=[ours.project.pk])).content.decode()
    assert 'name="keep_fraction" value="0.5"' in content and "paper keeps 0.10" in content
    assert 'name="max_new_tokens" value="96"' in content and 'name="gamma_minus" value="-0.03"' in content
    assert 'name="no_repeat_ngram_size" value="3"' in content and 'name="dpo_epochs" value="3"' in content
    assert "ours is relative" in content and "5e-7" in content
    # the defaults say what they were measured to do, and where
    assert 'id="defaults-note"' in content and "bench/default_run.py" in content and "bench/pair_quality.py" in content
    assert 'value="Run 2"' in content, "the next free run name is suggested"


def test_a_blank_name_becomes_the_next_run_number(client_for, engineer, ours):
    _create(client_for(engineer), ours)
    assert Run.objects.filter(project=ours.project, name="Run 2").exists()


def test_review_and_synthesis_stages_are_skipped_when_not_wanted(engineer, ours):
    upload = SimpleUploadedFile("list.txt", b"Write a poem.\nExplain DNS.\n")
    run = run_create(
        project=ours.project,
        created_by=engineer,
        model=model_embedded_ensure(),
        dimensions=[ours.dimension],
        config={"instruction_source": "upload", "instructions_file": upload, "require_review": False, "calibrate": True},
    )
    stages = _stages(run)
    assert stages["synthesize"] == "skipped" and stages["review"] == "skipped" and stages["calibrate"] == "pending"
    assert run.n_instructions == 2
    assert run.instructions_file.name == f"uploads/teams/{ours.team.pk}/runs/{run.pk}/instructions.txt"


@pytest.mark.parametrize(
    "field, value",
    [
        ("keep_fraction", 0),
        ("keep_fraction", 1.5),
        ("n_instructions", 0),
        ("n_instructions", 1_000_001),
        ("gamma_plus", 0),
        ("gamma_plus", 2),
        ("gamma_minus", 0.1),
        ("gamma_minus", -1.5),
        ("max_new_tokens", 32769),
        ("temperature", 0),
        ("top_p", 1.2),
        ("review_k", 11),
        ("dpo_learning_rate", -1),
        ("dpo_lora_r", 0),
    ],
)
def test_out_of_range_numbers_are_refused_next_to_their_field(client_for, engineer, ours, field, value):
    response = _create(client_for(engineer), ours, name="Bad", **{field: value})
    assert response.status_code == 400
    assert f'id="{field}-errors"'.encode() in response.content
    assert not Run.objects.filter(name="Bad").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_gamma_must_be_a_finite_number(client_for, engineer, ours, value):
    response = _create(client_for(engineer), ours, name="Bad", gamma_plus=value, gamma_minus=value)
    assert b'id="gamma_plus-errors"' in response.content and b'id="gamma_minus-errors"' in response.content


def test_the_service_refuses_non_finite_gamma_too(engineer, ours):
    with pytest.raises(ValidationError) as error:
        run_create(
            project=ours.project, created_by=engineer, model=model_embedded_ensure(), dimensions=[ours.dimension],
            config={"gamma_plus": math.nan},
        )
    assert "gamma_plus" in error.value.message_dict


def test_the_last_layer_may_not_come_before_the_first(client_for, engineer, ours):
    response = _create(client_for(engineer), ours, layer_start=15, layer_end=10)
    assert b'id="layer_end-errors"' in response.content and b"must not come before" in response.content


def test_one_layer_without_the_other_is_refused(client_for, engineer, ours):
    response = _create(client_for(engineer), ours, layer_start=10)
    assert b"or leave both blank" in response.content


def test_layers_beyond_the_embedded_model_are_refused(client_for, engineer, ours):
    response = _create(client_for(engineer), ours, layer_start=10, layer_end=30)
    assert b"has 30 layers (0\xe2\x80\x9329)" in response.content


def test_a_run_needs_a_dimension(client_for, engineer, ours):
    response = _create(client_for(engineer), ours, dimensions=[])
    assert b'id="dimensions-errors"' in response.content


def test_another_teams_dimension_or_model_cannot_be_smuggled_in(client_for, engineer, ours, theirs):
    response = _create(client_for(engineer), ours, name="Smuggle", dimensions=[theirs.dimension.pk], model=theirs.model.pk)
    assert b'id="dimensions-errors"' in response.content and b'id="model-errors"' in response.content
    assert not Run.objects.filter(name="Smuggle").exists()


def test_a_duplicate_run_name_is_refused(client_for, engineer, ours):
    response = _create(client_for(engineer), ours, name="first RUN")
    assert b'id="name-errors"' in response.content and b"already has a run" in response.content


def test_an_upload_run_needs_a_file(client_for, engineer, ours):
    response = _create(client_for(engineer), ours, instruction_source="upload")
    assert b'id="instructions_file-errors"' in response.content


def test_a_bad_upload_names_the_line_next_to_the_field(client_for, engineer, ours):
    upload = SimpleUploadedFile("list.jsonl", b'"fine"\n{"instruction": "ok"}\n{nope\n')
    response = _create(client_for(engineer), ours, instruction_source="upload", instructions_file=upload)
    assert response.status_code == 400
    content = response.content.decode()
    assert "Line 3: not valid JSON" in content.split('id="instructions_file-errors"', 1)[1][:200]


def test_a_wrong_extension_is_refused(client_for, engineer, ours):
    upload = SimpleUploadedFile("list.pdf", b"%PDF")
    response = _create(client_for(engineer), ours, instruction_source="upload", instructions_file=upload)
    assert b'id="instructions_file-errors"' in response.content


def test_a_too_large_upload_is_refused(client_for, engineer, ours, settings):
    settings.ICON2_MAX_UPLOAD_MB = 1
    upload = SimpleUploadedFile("list.txt", b"x\n" * 600_000)
    response = _create(client_for(engineer), ours, instruction_source="upload", instructions_file=upload)
    assert b"larger than 1 MB" in response.content


def test_a_good_upload_sets_the_instruction_count(client_for, engineer, ours):
    upload = SimpleUploadedFile("list.csv", b"instruction\nWrite a poem.\nExplain DNS.\nSay hi.\n")
    _create(client_for(engineer), ours, name="Uploaded", instruction_source="upload", instructions_file=upload)
    run = Run.objects.get(name="Uploaded")
    assert run.n_instructions == 3 and run.instructions_file.name.endswith("instructions.csv")


def test_launching_queues_the_run_and_asks_the_worker_on_commit(client_for, engineer, ours, monkeypatch, django_capture_on_commit_callbacks):
    calls = []
    from webapp.jobs import services as job_services

    monkeypatch.setattr(job_services, "run_advance", lambda *, run_id: calls.append(run_id))
    with django_capture_on_commit_callbacks(execute=True):
        client_for(engineer).post(reverse("studio:run_launch", args=[ours.run.pk]))
    ours.run.refresh_from_db()
    assert ours.run.status == "queued" and calls == [ours.run.pk]
    stages = _stages(ours.run)
    assert stages["extract"] == "queued" and stages["calibrate"] == "skipped"


def test_a_queued_run_says_it_waits_for_a_worker(client_for, engineer, viewer, ours):
    run_launch(run=ours.run, actor=engineer)
    content = client_for(viewer).get(reverse("studio:run", args=[ours.run.pk])).content.decode()
    assert "Queued — waiting for a worker" in content
    assert "Launch</button>" not in content


def test_a_run_launches_only_once(engineer, ours):
    run_launch(run=ours.run, actor=engineer)
    with pytest.raises(ValidationError, match="Only a draft"):
        run_launch(run=ours.run, actor=engineer)


def test_anna_cannot_launch_even_through_the_service(annotator, ours):
    with pytest.raises(PermissionDenied):
        run_launch(run=ours.run, actor=annotator)
    ours.run.refresh_from_db()
    assert ours.run.status == "draft"


def test_cancelling_a_queued_run_cancels_its_open_stages(client_for, engineer, ours):
    run_launch(run=ours.run, actor=engineer)
    client_for(engineer).post(reverse("studio:run_cancel", args=[ours.run.pk]))
    ours.run.refresh_from_db()
    assert ours.run.status == "cancelled"
    assert set(_stages(ours.run).values()) == {"cancelled", "skipped"}


def test_the_dashboard_lists_recent_runs_with_their_status(client_for, annotator, ours):
    content = client_for(annotator).get(reverse("studio:dashboard")).content.decode()
    assert "First run" in content and "badge-draft" in content


def test_stage_rows_hold_what_the_worker_reports(ours):
    stage = ours.run.stages.get(kind=Stage.Kind.GENERATE)
    stage.progress_done, stage.progress_total, stage.compute = 5, 20, {"wall_s": 1.5, "device": "cpu"}
    stage.save()
    assert stage.percent == 25
