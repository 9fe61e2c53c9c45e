"""Reads about people and teams. Access checks live here so every view and service shares them.

A user who is not a member of a team gets Http404 for anything in it (its existence is not
revealed); a member whose role lacks a permission gets PermissionDenied (403).
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from webapp.accounts.models import Invite, Membership, Team
from webapp.accounts.roles import Perm, Role, role_allows

SESSION_TEAM_KEY = "current_team_id"

User = AbstractBaseUser | AnonymousUser


def membership_list_for_user(*, user: User) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("team").order_by("team__name", "team__pk")


def membership_get(*, user: User, team: Team | int) -> Membership | None:
    if not user.is_authenticated:
        return None
    team_id = team.pk if isinstance(team, Team) else team
    return Membership.objects.filter(user=user, team_id=team_id).select_related("team").first()


def role_require(*, user: User, team: Team | int, perm: Perm) -> Membership:
    """The user's membership of the team, if their role grants `perm`.

    Raises Http404 for non-members and PermissionDenied for members without the permission.
    """
    membership = membership_get(user=user, team=team)
    if membership is None:
        raise Http404("No such team.")
    if not role_allows(membership.role, perm):
        raise PermissionDenied(f"Your role ({membership.get_role_display()}) cannot do this.")
    return membership


def team_get_for_user(*, user: User, pk: int, perm: Perm = Perm.READ) -> tuple[Team, Membership]:
    membership = role_require(user=user, team=pk, perm=perm)
    return membership.team, membership


def team_member_list(*, team: Team) -> QuerySet[Membership]:
    return team.memberships.select_related("user").order_by("user__username")


def team_owner_count(*, team: Team) -> int:
    return team.memberships.filter(role=Role.OWNER).count()


def invite_list_pending(*, team: Team) -> list[Invite]:
    return [invite for invite in team.invites.select_related("created_by") if invite.state == "pending"]


def invite_get_by_token(*, token: str) -> Invite:
    invite = Invite.objects.select_related("team").filter(token=token).first()
    if invite is None:
        raise Http404("No such invite.")
    return invite


def current_membership(request: HttpRequest) -> Membership | None:
    """The team the user is working in: the one stored in the session, else their first team."""
    if hasattr(request, "_current_membership"):
        return request._current_membership  # type: ignore[attr-defined]
    membership = None
    if request.user.is_authenticated:
        team_id = request.session.get(SESSION_TEAM_KEY)
        if team_id is not None:
            membership = membership_get(user=request.user, team=team_id)
        if membership is None:
            membership = membership_list_for_user(user=request.user).first()
            if membership is not None:
                request.session[SESSION_TEAM_KEY] = membership.team_id
    request._current_membership = membership  # type: ignore[attr-defined]
    return membership


def current_team_remember(request: HttpRequest, membership: Membership) -> None:
    """Make `membership`'s team the current one (after the user opened something in it)."""
    if request.session.get(SESSION_TEAM_KEY) != membership.team_id:
        request.session[SESSION_TEAM_KEY] = membership.team_id
    request._current_membership = membership  # type: ignore[attr-defined]
