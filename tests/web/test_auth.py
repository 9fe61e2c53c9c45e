"""Logging in and out and changing a password."""

from __future__ import annotations

from django.urls import reverse

from .conftest import PASSWORD


def test_olivia_logs_in_and_lands_on_her_dashboard(client, ours, owner):
    response = client.post(reverse("login"), {"username": "olivia", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("studio:dashboard")
    assert b"Acme alignment" in response.content


def test_a_wrong_password_is_refused_with_a_message(client, owner):
    response = client.post(reverse("login"), {"username": "olivia", "password": "nope"})
    assert response.status_code == 200
    assert b"didn\xe2\x80\x99t match" in response.content


def test_logging_out_needs_a_post_and_ends_the_session(client_for, owner):
    client = client_for(owner)
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("studio:dashboard")).status_code == 302


def test_eddie_changes_his_password(client_for, engineer):
    client = client_for(engineer)
    response = client.post(
        reverse("accounts:password_change"),
        {"old_password": PASSWORD, "new_password1": "a-much-longer-secret-42", "new_password2": "a-much-longer-secret-42"},
    )
    assert response.status_code == 302
    engineer.refresh_from_db()
    assert engineer.check_password("a-much-longer-secret-42")


def test_a_wrong_old_password_shows_next_to_its_field(client_for, engineer):
    response = client_for(engineer).post(
        reverse("accounts:password_change"),
        {"old_password": "wrong", "new_password1": "a-much-longer-secret-42", "new_password2": "a-much-longer-secret-42"},
    )
    assert response.status_code == 200
    assert b'id="old_password-errors"' in response.content


def test_every_form_carries_a_csrf_token(client_for, owner, ours):
    for name, kwargs in [
        ("studio:dimension_new", {"project_pk": ours.project.pk}),
        ("studio:run_new", {"project_pk": ours.project.pk}),
        ("accounts:team_settings", {"team_pk": ours.team.pk}),
    ]:
        content = client_for(owner).get(reverse(name, kwargs=kwargs)).content.decode()
        assert content.count("<form") <= content.count("csrfmiddlewaretoken"), name


def test_posts_without_a_csrf_token_are_refused(ours, owner):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(reverse("studio:project_new"), {"name": "Sneaky"})
    assert response.status_code == 403
