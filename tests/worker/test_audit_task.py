"""The bias audit from the Audit tab: asked for over HTTP, done by the worker's real audit function
on a real tiny model (saved as a local folder) with the run's real extracted directions and
generated pairs, then shown on the tab; roles and teams decide who may see or ask."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.urls import reverse

from webapp.accounts.services import membership_add, team_create
from webapp.jobs import audits
from tests.worker.test_judge_failure import _drain
from webapp.jobs.models import RunAudit
from webapp.studio.models import Stage
from webapp.studio.services import dimension_create, model_create, project_create, run_create, run_launch


@pytest.fixture
def paused_run(transactional_db, django_capture_on_commit_callbacks, tmp_path, settings):
    """A run on the tiny model that extracted, filtered and generated, and now waits for review."""
    from tests.engine.conftest import make_tiny_lm

    settings.ICON2_MODEL_ROOTS = [tmp_path]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    lm = make_tiny_lm()
    lm.model.save_pretrained(tmp_path / "tiny")
    lm.tokenizer.save_pretrained(tmp_path / "tiny")
    owner = get_user_model().objects.create_user(username="olivia", password="pw-123456789")
    team = team_create(name="Acme", owner=owner)
    project = project_create(team=team, name="P", description="", created_by=owner)
    dim = dimension_create(project=project, name="Cheer", pairs=[("You are cheerful.", "You are gloomy.")],
                           feature_instructions="Describe the sea.\nTell me about a fox.\nWhat is a good breakfast?", created_by=owner)
    model = model_create(team=team, created_by=owner, name="Tiny", kind="local_dir", path_or_id=str(tmp_path / "tiny"))
    upload = ContentFile("\n".join(f"Tell me about thing number {i}." for i in range(24)).encode(), name="pool.txt")
    run = run_create(project=project, created_by=owner, model=model, dimensions=[dim], config={
        "name": "R", "instruction_source": "upload", "instructions_file": upload, "keep_fraction": 0.5,
        "max_new_tokens": 8, "quality_gate": False, "require_review": True})
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=run, actor=owner)
    with django_capture_on_commit_callbacks(execute=True):
        _drain(run)
    assert run.stages.get(kind="generate").status == Stage.Status.SUCCEEDED
    assert run.pairs.count() == 12
    return run, owner, dim


def test_the_audit_tab_asks_the_worker_and_shows_overlaps_and_gaps(paused_run, client, django_capture_on_commit_callbacks):
    from worker.audit import run_audit

    run, owner, dim = paused_run
    client.force_login(owner)
    page = client.get(reverse("jobs:run_audit", args=[run.pk]))
    assert page.status_code == 200 and b"No audit yet" in page.content and b"Run the audit" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("jobs:run_audit", args=[run.pk]))
    assert response.status_code == 302
    audit = RunAudit.objects.get(run=run)
    assert audit.status == RunAudit.Status.QUEUED
    with pytest.raises(ValidationError, match="already under way"):
        audits.audit_request(run=run, actor=owner)
    polling = client.get(reverse("jobs:run_audit", args=[run.pk]))
    assert b'hx-trigger="every 2s"' in polling.content

    run_audit(audit.pk)  # what the interactive worker's task does
    audit.refresh_from_db()
    assert audit.status == RunAudit.Status.SUCCEEDED, audit.error
    (d,) = audit.result["dimensions"]
    assert d["id"] == dim.pk and d["name"] == "Cheer"
    assert set(d["overlap"]["cosines"]) == {"sentiment", "length", "formality", "refusal", "confidence"}
    assert all(-1.0 <= c <= 1.0 for c in d["overlap"]["cosines"].values()) and 0.0 <= d["overlap"]["explained"] <= 1.0
    assert d["pairs"]["pairs"] == 12  # every generated pair, measured
    # the run is reviewed, so the pairs' stored evaluation-judge verdicts were used
    assert d["pairs"]["judge"]["judged"] == 12 and d["verdict"]
    # the references were cached under the team's own folder
    from pathlib import Path
    from django.conf import settings
    cached = list((Path(settings.MEDIA_ROOT) / "teams" / str(run.project.team_id) / "references").rglob("*.safetensors"))
    assert len(cached) == 5

    page = client.get(reverse("jobs:run_audit", args=[run.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and "hx-trigger" not in html
    assert d["verdict"] in html.replace("&#x27;", "'") and "Sentiment" in html and "Confidence" in html
    assert "Chosen − rejected over 12 pairs" in html and "Audit again" in html


def test_annotators_may_read_but_not_ask_and_other_teams_see_nothing(paused_run, client):
    run, owner, _ = paused_run
    User = get_user_model()
    annotator = User.objects.create_user(username="ann", password="pw-123456789")
    membership_add(team=run.project.team, user=annotator, role="annotator", actor=owner)
    stranger = User.objects.create_user(username="eve", password="pw-123456789")
    team_create(name="Other", owner=stranger)
    client.force_login(annotator)
    assert client.get(reverse("jobs:run_audit", args=[run.pk])).status_code == 200
    assert client.post(reverse("jobs:run_audit", args=[run.pk])).status_code == 403
    client.force_login(stranger)
    assert client.get(reverse("jobs:run_audit", args=[run.pk])).status_code == 404
    assert client.post(reverse("jobs:run_audit", args=[run.pk])).status_code == 404
    assert not RunAudit.objects.exists()


def test_a_flagged_audit_warns_beside_review_done(paused_run, client):
    run, owner, dim = paused_run
    RunAudit.objects.create(run=run, created_by=owner, status=RunAudit.Status.SUCCEEDED, result={
        "references": [{"key": "sentiment", "name": "Sentiment", "about": ""}],
        "dimensions": [{"id": dim.pk, "name": "Cheer", "verdict": "Cheer overlaps Sentiment at 0.75.",
                        "overlap": {"cosines": {"sentiment": 0.75}, "flagged": ["sentiment"], "explained": 0.6, "layers": [1, 2]},
                        "pairs": None, "orthogonalised_against": []}]})
    client.force_login(owner)
    html = client.get(reverse("studio:run", args=[run.pk])).content.decode()
    assert "Review done — continue" in html
    assert "Bias audit: Cheer overlaps Sentiment at 0.75" in html and 'id="audit-warning"' in html


def test_an_audit_with_no_directions_is_refused(paused_run):
    run, owner, _ = paused_run
    run.directions.all().delete()
    with pytest.raises(ValidationError, match="no directions"):
        audits.audit_request(run=run, actor=owner)
