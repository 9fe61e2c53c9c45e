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
from webapp.studio.services import run_create, run_launch


@pytest.fixture
def paused_run(tiny, django_capture_on_commit_callbacks):
    """A run on the tiny model that extracted, filtered and generated, and now waits for review."""
    owner, project, dim, model = tiny
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
    assert page.status_code == 200 and "every 2s" not in html  # the audit is done: its tab stops polling
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


def test_the_remedy_orthogonalises_regenerates_and_shows_before_and_after(
        paused_run, client, django_capture_on_commit_callbacks, settings):
    """Audit, then project Sentiment out of Cheer's direction from the tab: the worker writes the new
    direction, the stages after the filter run again on the same instructions, the generate stage
    queues the waiting audit, and the tab and the dataset card show both audits' measures."""
    from icon2engine import load_directions
    from icon2engine.audit import direction_overlap, reference_directions
    from pathlib import Path
    from webapp.jobs.models import DirectionArtifact
    from webapp.review.export import dataset_card
    from webapp.review.selectors import dataset_summary
    from worker.audit import run_audit
    from worker.model_cache import get_model

    run, owner, dim = paused_run
    kept_before = sorted(run.instructions.filter(kept=True).values_list("pk", flat=True))
    pairs_before = set(run.pairs.values_list("pk", flat=True))
    original = DirectionArtifact.objects.get(run=run).path
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("jobs:run_audit", args=[run.pk]))
    run_audit(RunAudit.objects.get(run=run).pk)
    first = RunAudit.objects.get(run=run)
    assert first.status == RunAudit.Status.SUCCEEDED, first.error
    html = client.get(reverse("jobs:run_audit", args=[run.pk])).content.decode()
    assert "Orthogonalise and regenerate" in html and 'name="against" value="sentiment"' in html

    # bad requests lose nothing and say why
    url = reverse("jobs:run_audit_remedy", args=[run.pk])
    for data, said in (({"dimension": dim.pk}, "at least one reference"),
                       ({"dimension": dim.pk + 99, "against": ["sentiment"]}, "not in the latest audit"),
                       ({"dimension": "x", "against": ["sentiment"]}, "Say which dimension")):
        page = client.post(url, data, follow=True)
        assert page.status_code == 200 and said in page.content.decode(), said
    assert RunAudit.objects.filter(run=run).count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, {"dimension": dim.pk, "against": ["sentiment", "nonsense"]}).status_code == 302
    remedy = RunAudit.objects.exclude(pk=first.pk).get(run=run)
    assert remedy.before_id == first.pk and remedy.remedy["against"] == ["sentiment"]
    with pytest.raises(ValidationError, match="already under way"):
        audits.audit_request(run=run, actor=owner)

    with django_capture_on_commit_callbacks(execute=True):
        run_audit(remedy.pk)  # the worker: orthogonalise, then the services reset the stages after the filter
    remedy.refresh_from_db()
    assert remedy.status == RunAudit.Status.WAITING, remedy.error
    artifact = DirectionArtifact.objects.get(run=run)
    assert artifact.path != original and Path(original).exists() and remedy.remedy["original_path"] == original
    refs = reference_directions(get_model(run.model), cache_dir=Path(settings.MEDIA_ROOT) / "teams" / str(run.project.team_id) / "references")
    assert abs(direction_overlap(load_directions(artifact.path), refs)["cosines"]["sentiment"]) <= 0.05
    assert run.pairs.count() == 0
    assert run.stages.get(kind="generate").status in (Stage.Status.PENDING, Stage.Status.QUEUED)  # to run again
    assert run.stages.get(kind="filter").status == Stage.Status.SUCCEEDED  # the same instructions
    assert 'hx-trigger="every 10s"' in client.get(reverse("jobs:run_audit", args=[run.pk])).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        _drain(run)  # calibrate and generate again; the generate stage queues the waiting audit
    remedy.refresh_from_db()
    assert remedy.status == RunAudit.Status.QUEUED
    assert sorted(run.instructions.filter(kept=True).values_list("pk", flat=True)) == kept_before
    assert run.pairs.count() == 12 and not pairs_before & set(run.pairs.values_list("pk", flat=True))
    run_audit(remedy.pk)
    remedy.refresh_from_db()
    assert remedy.status == RunAudit.Status.SUCCEEDED, remedy.error
    (d,) = remedy.result["dimensions"]
    assert d["orthogonalised_against"] == ["sentiment"] and abs(d["overlap"]["cosines"]["sentiment"]) <= 0.05
    assert d["pairs"]["pairs"] == 12

    html = client.get(reverse("jobs:run_audit", args=[run.pk])).content.decode().replace("&#x27;", "'")
    assert "Before and after the remedy" in html and "orthogonalised against Sentiment" in html
    assert first.result["dimensions"][0]["verdict"] in html and d["verdict"] in html
    card = dataset_card(run=run, meta=dataset_summary(run=run))
    assert "## Bias audit" in card and "Orthogonalised against Sentiment" in card and "Before that:" in card

    # asking again for what is already done is refused
    with pytest.raises(ValidationError, match="already orthogonalised"):
        audits.audit_remedy_request(run=run, actor=owner, dimension_id=dim.pk, against=["sentiment"])


def test_the_remedy_is_refused_after_review_and_for_annotators(paused_run, client):
    from webapp.review.models import PairEdit

    run, owner, dim = paused_run
    done = RunAudit.objects.create(run=run, created_by=owner, status=RunAudit.Status.SUCCEEDED, result={
        "references": [{"key": "sentiment", "name": "Sentiment", "about": ""}],
        "dimensions": [{"id": dim.pk, "name": "Cheer", "verdict": "v", "overlap": {"cosines": {"sentiment": 0.7},
                        "flagged": ["sentiment"], "explained": 0.5, "layers": [1, 2]}, "pairs": None, "orthogonalised_against": []}]})
    annotator = get_user_model().objects.create_user(username="ann", password="pw-123456789")
    membership_add(team=run.project.team, user=annotator, role="annotator", actor=owner)
    client.force_login(annotator)
    assert client.post(reverse("jobs:run_audit_remedy", args=[run.pk]), {"dimension": dim.pk, "against": ["sentiment"]}).status_code == 403
    pair = run.pairs.first()
    PairEdit.objects.create(pair=pair, editor=owner, side="chosen", original=pair.chosen, text="edited")
    with pytest.raises(ValidationError, match="reviewed or edited"):
        audits.audit_remedy_request(run=run, actor=owner, dimension_id=dim.pk, against=["sentiment"])
    assert list(RunAudit.objects.filter(run=run)) == [done] and run.pairs.count() == 12


def test_generation_queues_an_audit_when_auto_audit_is_on(paused_run, settings, django_capture_on_commit_callbacks):
    from webapp.jobs.filtering import filter_threshold_apply

    run, owner, _ = paused_run
    settings.ICON2_AUDIT_AUTO = True  # the product's default (the test settings turn it off)
    scores = sorted(run.instructions.exclude(consistency=None).values_list("consistency", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        filter_threshold_apply(run=run, threshold=scores[len(scores) // 2])  # regenerate from the stored scores
    with django_capture_on_commit_callbacks(execute=True):
        _drain(run)
    assert run.stages.get(kind="generate").status == Stage.Status.SUCCEEDED
    (audit,) = RunAudit.objects.filter(run=run)
    assert audit.status == RunAudit.Status.QUEUED and audit.created_by is None and not audit.remedy
