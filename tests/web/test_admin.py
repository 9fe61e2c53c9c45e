"""Every model of the four apps is in the Django admin, and its pages open (with a row of each
kind that a run leaves behind, so the change pages are opened too)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse


APPS = ("accounts", "studio", "jobs", "review")


def test_every_model_of_ours_is_registered():
    ours = [m for app in APPS for m in apps.get_app_config(app).get_models()]
    assert {m._meta.app_label for m in ours} == set(APPS)
    assert [m.__name__ for m in ours if m not in admin.site._registry] == []


@pytest.fixture
def rows(ours, owner):
    """A finished run with its pairs, a review verdict, an audit and a playground try."""
    from webapp.jobs.models import Chunk, Probe, RunAudit
    from webapp.review.services import api_token_create, review_assign, verdict_submit

    from .finished import finish_run

    run = finish_run(ours.run)
    Chunk.objects.create(stage=run.stages.first(), index=0, stop=1)
    Probe.objects.create(run=run, dimension=ours.dimension, instruction="Say hi.", gamma=0.1, created_by=owner)
    RunAudit.objects.create(run=run, created_by=owner)
    from webapp.review.models import ReviewAssignment

    assert review_assign(run=run)
    assignment = ReviewAssignment.objects.filter(run=run).first()
    verdict_submit(run=run, user=assignment.annotator, assignment_id=assignment.pk, choice="left")
    api_token_create(user=owner)
    return run


@pytest.mark.parametrize("app", APPS)
def test_a_superuser_opens_every_list_and_change_page(app, admin_client, rows):
    for model in apps.get_app_config(app).get_models():
        meta = model._meta
        assert admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")).status_code == 200
        obj = model.objects.first()
        if obj is not None:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
            assert admin_client.get(url).status_code == 200, url


def test_team_members_are_not_let_into_the_admin(client_for, owner):
    response = client_for(owner).get(reverse("admin:index"))
    assert response.status_code == 302
