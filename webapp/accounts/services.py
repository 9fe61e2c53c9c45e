"""Writes about people and teams: `<entity>_<action>` with keyword-only arguments."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from webapp.limits import NAME_MAX, text_check
from webapp.accounts.models import Invite, Membership, Team
from webapp.accounts.roles import Perm, Role
from webapp.accounts.selectors import membership_get, role_require, team_owner_count


def _clean_name(name: str) -> str:
    name = " ".join(text_check(name, field="name", label="name", max_length=NAME_MAX).split())
    if not name:
        raise ValidationError({"name": "Give the team a name."})
    return name


@transaction.atomic
def team_create(*, name: str, owner: AbstractBaseUser) -> Team:
    team = Team.objects.create(name=_clean_name(name))
    Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    return team


def team_rename(*, team: Team, name: str, actor: AbstractBaseUser) -> Team:
    role_require(user=actor, team=team, perm=Perm.MANAGE)
    team.name = _clean_name(name)
    team.save(update_fields=["name"])
    return team


def membership_add(*, team: Team, user: AbstractBaseUser, role: str, actor: AbstractBaseUser) -> Membership:
    role_require(user=actor, team=team, perm=Perm.MANAGE)
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    membership, _ = Membership.objects.get_or_create(team=team, user=user, defaults={"role": role})
    return membership


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str, actor: AbstractBaseUser) -> Membership:
    role_require(user=actor, team=membership.team_id, perm=Perm.MANAGE)
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}; choose one of {', '.join(Role.values)}."})
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == Role.OWNER and role != Role.OWNER and team_owner_count(team=membership.team) == 1:
        raise ValidationError({"role": "A team needs at least one owner; make someone else owner first."})
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: AbstractBaseUser) -> None:
    role_require(user=actor, team=membership.team_id, perm=Perm.MANAGE)
    if membership.role == Role.OWNER and team_owner_count(team=membership.team) == 1:
        raise ValidationError("A team needs at least one owner; make someone else owner first.")
    membership.delete()


def invite_create(
    *, team: Team, role: str, created_by: AbstractBaseUser, note: str = "", days: int | None = None
) -> Invite:
    role_require(user=created_by, team=team, perm=Perm.MANAGE)
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    days = settings.ICON2_INVITE_DAYS if days is None else days
    if not 1 <= days <= 365:
        raise ValidationError({"days": "An invite lasts between 1 and 365 days."})
    return Invite.objects.create(
        team=team, role=role, note=note.strip(), created_by=created_by, expires_at=timezone.now() + timedelta(days=days)
    )


def invite_revoke(*, invite: Invite, actor: AbstractBaseUser) -> Invite:
    role_require(user=actor, team=invite.team_id, perm=Perm.MANAGE)
    if invite.state == "pending":
        invite.revoked_at = timezone.now()
        invite.save(update_fields=["revoked_at"])
    return invite


def _invite_lock_usable(invite: Invite) -> Invite:
    invite = Invite.objects.select_for_update().get(pk=invite.pk)
    if not invite.is_usable:
        raise ValidationError(f"This invite link has {invite.state if invite.state != 'pending' else 'expired'}.")
    return invite


@transaction.atomic
def invite_signup(*, invite: Invite, username: str, password: str) -> tuple[AbstractBaseUser, Membership]:
    """A new account that joins through `invite`: the invite is locked and checked first, and the
    account is created in the same transaction, so a used invite never leaves an orphan account."""
    invite = _invite_lock_usable(invite)
    try:
        user = get_user_model().objects.create_user(username=username, password=password)
    except IntegrityError:
        raise ValidationError({"username": "That username was taken a moment ago; choose another."}) from None
    return user, invite_accept(invite=invite, user=user)


@transaction.atomic
def invite_accept(*, invite: Invite, user: AbstractBaseUser) -> Membership:
    invite = _invite_lock_usable(invite)
    existing = membership_get(user=user, team=invite.team_id)
    if existing is not None:
        raise ValidationError(f"You are already a member of {invite.team} ({existing.get_role_display()}).")
    membership = Membership.objects.create(team_id=invite.team_id, user=user, role=invite.role)
    invite.accepted_by = user
    invite.accepted_at = timezone.now()
    invite.save(update_fields=["accepted_by", "accepted_at"])
    return membership
