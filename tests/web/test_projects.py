"""Projects: creating, renaming, and what an empty project tells you to do next."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from webapp.studio.models import Project

from .conftest import make_user


def test_eddie_creates_a_project_and_is_told_what_to_do_next(client_for, engineer, ours):
    response = client_for(engineer).post(reverse("studio:project_new"), {"name": "Tutor voice", "description": "Kinder"}, follow=True)
    project = Project.objects.get(name="Tutor voice")
    assert project.team == ours.team and project.created_by == engineer
    assert b"No dimensions yet" in response.content
    assert b"copy a preset" in response.content


def test_a_duplicate_project_name_is_refused_next_to_the_name(client_for, engineer, ours):
    response = client_for(engineer).post(reverse("studio:project_new"), {"name": "SUPPORT TONE"})
    assert response.status_code == 200
    assert b'id="name-errors"' in response.content and b"already has a project" in response.content


def test_the_same_name_is_fine_in_another_team(client_for, outsider, ours, theirs):
    client_for(outsider).post(reverse("studio:project_new"), {"name": "Support tone"})
    assert Project.objects.filter(name="Support tone").count() == 2


def test_anna_cannot_create_a_project(client_for, annotator, ours):
    assert client_for(annotator).post(reverse("studio:project_new"), {"name": "Nope"}).status_code == 403
    assert not Project.objects.filter(name="Nope").exists()


def test_victor_reads_a_project_without_edit_buttons(client_for, viewer, ours):
    content = client_for(viewer).get(reverse("studio:project", args=[ours.project.pk])).content.decode()
    assert "Support tone" in content and "Helpfulness" in content
    assert reverse("studio:run_new", args=[ours.project.pk]) not in content
    assert reverse("studio:project_edit", args=[ours.project.pk]) not in content


def test_someone_without_a_team_is_invited_to_create_one(db):
    client = Client()
    client.force_login(make_user("newbie"))
    content = client.get(reverse("studio:dashboard")).content
    assert b"Create a team" in content
    assert client.get(reverse("studio:projects"))["Location"] == reverse("accounts:team_new")
