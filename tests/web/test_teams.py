"""Teams: creating, switching, roles and invite links."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from webapp.accounts.models import Invite, Membership
from webapp.accounts.services import invite_accept, invite_create, membership_remove, membership_set_role

from .conftest import make_user


def test_anyone_may_start_a_team_and_becomes_its_owner(client_for, viewer):
    response = client_for(viewer).post(reverse("accounts:team_new"), {"name": "  Victor's   lab "})
    assert response.status_code == 302
    membership = Membership.objects.get(user=viewer, team__name="Victor's lab")
    assert membership.role == "owner"


def test_a_team_needs_a_name(client_for, viewer):
    response = client_for(viewer).post(reverse("accounts:team_new"), {"name": "   "})
    assert b"This field is required" in response.content


def test_eddie_in_two_teams_switches_between_them(client_for, engineer, ours, theirs, outsider):
    Membership.objects.create(team=theirs.team, user=engineer, role="viewer")
    client = client_for(engineer)
    assert b"Support tone" in client.get(reverse("studio:projects")).content
    client.post(reverse("accounts:team_switch"), {"team": theirs.team.pk})
    page = client.get(reverse("studio:projects")).content
    assert b"Secret project" in page and b"Support tone" not in page


def test_switching_to_a_team_you_are_not_in_is_404(client_for, viewer, theirs):
    assert client_for(viewer).post(reverse("accounts:team_switch"), {"team": theirs.team.pk}).status_code == 404


def test_opening_another_teams_project_makes_it_current(client_for, engineer, ours, theirs):
    Membership.objects.create(team=theirs.team, user=engineer, role="viewer")
    client = client_for(engineer)
    client.get(reverse("studio:project", args=[theirs.project.pk]))
    assert client.session["current_team_id"] == theirs.team.pk


def test_olivia_changes_victors_role_in_place(client_for, owner, viewer, ours):
    membership = Membership.objects.get(user=viewer)
    client = client_for(owner, htmx=True)
    response = client.post(reverse("accounts:member_role", args=[ours.team.pk, membership.pk]), {"role": "engineer"})
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith(f'<tr id="member-{membership.pk}"')
    membership.refresh_from_db()
    assert membership.role == "engineer"


def test_the_last_owner_cannot_step_down_or_leave(owner, ours):
    membership = Membership.objects.get(user=owner, team=ours.team)
    with pytest.raises(ValidationError, match="at least one owner"):
        membership_set_role(membership=membership, role="viewer", actor=owner)
    with pytest.raises(ValidationError, match="at least one owner"):
        membership_remove(membership=membership, actor=owner)


def test_with_a_second_owner_olivia_may_step_down(owner, engineer, ours):
    membership_set_role(membership=Membership.objects.get(user=engineer), role="owner", actor=owner)
    membership_set_role(membership=Membership.objects.get(user=owner, team=ours.team), role="viewer", actor=owner)
    assert Membership.objects.get(user=owner, team=ours.team).role == "viewer"


def test_an_engineer_cannot_change_roles_even_through_the_service(engineer, viewer, ours):
    with pytest.raises(PermissionDenied):
        membership_set_role(membership=Membership.objects.get(user=viewer), role="owner", actor=engineer)


def test_the_outsider_cannot_touch_our_roles_through_the_service(outsider, viewer, ours):
    with pytest.raises(Http404):
        membership_set_role(membership=Membership.objects.get(user=viewer), role="owner", actor=outsider)


def test_only_owners_see_pending_invite_links(client_for, owner, engineer, ours):
    invite = invite_create(team=ours.team, role="annotator", created_by=owner)
    assert invite.token.encode() in client_for(owner).get(reverse("accounts:team_settings", args=[ours.team.pk])).content
    assert invite.token.encode() not in client_for(engineer).get(reverse("accounts:team_settings", args=[ours.team.pk])).content


def test_olivia_creates_an_invite_and_sees_its_link(client_for, owner, ours):
    response = client_for(owner).post(
        reverse("accounts:invite_new", args=[ours.team.pk]), {"role": "engineer", "note": "Erin", "days": 3}, follow=True
    )
    invite = Invite.objects.get(team=ours.team)
    assert invite.role == "engineer"
    assert invite.expires_at - timezone.now() > timedelta(days=2, hours=23)
    assert reverse("accounts:invite", args=[invite.token]).encode() in response.content


def test_an_invite_lasting_too_long_is_refused_next_to_the_field(client_for, owner, ours):
    response = client_for(owner).post(reverse("accounts:invite_new", args=[ours.team.pk]), {"role": "engineer", "days": 900})
    assert response.status_code == 400
    assert b'id="days-errors"' in response.content


def test_a_new_person_signs_up_through_an_invite_and_joins(client, owner, ours):
    invite = invite_create(team=ours.team, role="annotator", created_by=owner)
    url = reverse("accounts:invite", args=[invite.token])
    assert b"Create an account" in client.get(url).content
    response = client.post(url, {"username": "erin", "password1": "a-long-pass-phrase-9", "password2": "a-long-pass-phrase-9"})
    assert response.status_code == 302
    assert Membership.objects.get(user__username="erin", team=ours.team).role == "annotator"
    assert b"Support tone" in client.get(reverse("studio:dashboard")).content


def test_an_existing_user_accepts_an_invite(client_for, owner, outsider, ours):
    invite = invite_create(team=ours.team, role="viewer", created_by=owner)
    client_for(outsider).post(reverse("accounts:invite", args=[invite.token]))
    assert Membership.objects.get(user=outsider, team=ours.team).role == "viewer"


def test_an_invite_works_once(owner, ours):
    invite = invite_create(team=ours.team, role="viewer", created_by=owner)
    invite_accept(invite=invite, user=make_user("erin"))
    with pytest.raises(ValidationError):
        invite_accept(invite=invite, user=make_user("fred"))


def test_expired_and_revoked_invites_answer_410(client, owner, ours):
    expired = invite_create(team=ours.team, role="viewer", created_by=owner)
    Invite.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked = invite_create(team=ours.team, role="viewer", created_by=owner)
    client.force_login(owner)
    client.post(reverse("accounts:invite_revoke", args=[ours.team.pk, revoked.pk]))
    client.logout()
    for invite in (expired, revoked):
        response = client.get(reverse("accounts:invite", args=[invite.token]))
        assert response.status_code == 410
        assert b"no longer works" in response.content


def test_an_unknown_invite_token_is_404(client, db):
    assert client.get(reverse("accounts:invite", args=["not-a-token"])).status_code == 404
