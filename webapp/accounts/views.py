"""People and teams: team creation and switching, team settings, invites. Thin views over services."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from webapp.ids import id_parse
from webapp.accounts import services
from webapp.accounts.forms import InviteForm, RoleForm, TeamForm
from webapp.accounts.models import Invite
from webapp.accounts.roles import ROLE_HELP, Perm, Role, role_allows
from webapp.accounts.selectors import (
    current_team_remember,
    invite_get_by_token,
    invite_list_pending,
    team_get_for_user,
    team_member_list,
)


def _errors_to_messages(request: HttpRequest, error: ValidationError) -> None:
    for message in error.messages:
        messages.error(request, message)


@login_required
@require_http_methods(["GET", "POST"])
def team_new(request: HttpRequest) -> HttpResponse:
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = services.team_create(name=form.cleaned_data["name"], owner=request.user)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            current_team_remember(request, team.memberships.get(user=request.user))
            messages.success(request, f"Created {team}. Invite people from its settings.")
            return redirect("studio:dashboard")
    return render(request, "accounts/team_new.html", {"form": form})


@login_required
@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    team_id = id_parse(request.POST.get("team"))
    if team_id is None:
        return redirect("studio:dashboard")
    _, membership = team_get_for_user(user=request.user, pk=team_id)
    current_team_remember(request, membership)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = reverse("studio:dashboard")
    return HttpResponseRedirect(target)


def _settings_context(request: HttpRequest, team, membership, **extra) -> dict:
    can_manage = role_allows(membership.role, Perm.MANAGE)
    context = {
        "team": team,
        "membership": membership,
        "can_manage": can_manage,
        "members": team_member_list(team=team),
        "roles": Role.choices,
        "role_help": [(label, ROLE_HELP[value]) for value, label in Role.choices],
        "team_form": TeamForm(initial={"name": team.name}),
        "invite_form": InviteForm(),
    }
    if can_manage:
        context["invites"] = invite_list_pending(team=team)
    context.update(extra)
    return context


@login_required
@require_http_methods(["GET", "POST"])
def team_settings(request: HttpRequest, team_pk: int) -> HttpResponse:
    team, membership = team_get_for_user(user=request.user, pk=team_pk)
    current_team_remember(request, membership)
    extra = {}
    if request.method == "POST":
        team, membership = team_get_for_user(user=request.user, pk=team_pk, perm=Perm.MANAGE)
        form = TeamForm(request.POST)
        if form.is_valid():
            try:
                services.team_rename(team=team, name=form.cleaned_data["name"], actor=request.user)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, "Team renamed.")
                return redirect("accounts:team_settings", team_pk=team.pk)
        extra["team_form"] = form
    return render(request, "accounts/team_settings.html", _settings_context(request, team, membership, **extra))


@login_required
@require_POST
def member_role(request: HttpRequest, team_pk: int, membership_pk: int) -> HttpResponse:
    team, membership = team_get_for_user(user=request.user, pk=team_pk, perm=Perm.MANAGE)
    member = get_object_or_404(team.memberships.select_related("user"), pk=membership_pk)
    form = RoleForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            member = services.membership_set_role(membership=member, role=form.cleaned_data["role"], actor=request.user)
        except ValidationError as exc:
            error = " ".join(exc.messages)
    else:
        error = "Choose a role."
    if request.htmx:
        return render(
            request,
            "accounts/_member_row.html",
            {"member": member, "team": team, "can_manage": True, "roles": Role.choices, "row_error": error,
             "membership": membership},
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"{member.user} is now {member.get_role_display().lower()}.")
    return redirect("accounts:team_settings", team_pk=team.pk)


@login_required
@require_POST
def member_remove(request: HttpRequest, team_pk: int, membership_pk: int) -> HttpResponse:
    team, _ = team_get_for_user(user=request.user, pk=team_pk, perm=Perm.MANAGE)
    member = get_object_or_404(team.memberships.select_related("user"), pk=membership_pk)
    try:
        services.membership_remove(membership=member, actor=request.user)
    except ValidationError as error:
        _errors_to_messages(request, error)
    else:
        messages.success(request, f"Removed {member.user} from {team}.")
    return redirect("accounts:team_settings", team_pk=team.pk)


@login_required
@require_POST
def invite_new(request: HttpRequest, team_pk: int) -> HttpResponse:
    team, membership = team_get_for_user(user=request.user, pk=team_pk, perm=Perm.MANAGE)
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invite = services.invite_create(team=team, created_by=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            link = request.build_absolute_uri(reverse("accounts:invite", args=[invite.token]))
            messages.success(request, f"Invite link created; send it to the person you invite: {link}")
            return redirect("accounts:team_settings", team_pk=team.pk)
    return render(
        request, "accounts/team_settings.html", _settings_context(request, team, membership, invite_form=form), status=400
    )


@login_required
@require_POST
def invite_revoke(request: HttpRequest, team_pk: int, invite_pk: int) -> HttpResponse:
    team, _ = team_get_for_user(user=request.user, pk=team_pk, perm=Perm.MANAGE)
    invite = get_object_or_404(Invite, team=team, pk=invite_pk)
    services.invite_revoke(invite=invite, actor=request.user)
    messages.success(request, "Invite revoked; the link no longer works.")
    return redirect("accounts:team_settings", team_pk=team.pk)


@require_http_methods(["GET", "POST"])
def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    invite = invite_get_by_token(token=token)
    if not invite.is_usable:
        return render(request, "accounts/invite.html", {"invite": invite, "unusable": True}, status=410)
    signup_form = None if request.user.is_authenticated else UserCreationForm(request.POST or None)
    if request.method == "POST":
        if signup_form is not None and not signup_form.is_valid():
            return render(request, "accounts/invite.html", {"invite": invite, "signup_form": signup_form}, status=400)
        try:
            if signup_form is not None:
                user, membership = services.invite_signup(
                    invite=invite,
                    username=signup_form.cleaned_data["username"],
                    password=signup_form.cleaned_data["password1"],
                )
            else:
                membership = services.invite_accept(invite=invite, user=request.user)
        except ValidationError as error:
            invite.refresh_from_db()
            if not invite.is_usable:  # someone else used it first: no account was created
                return render(request, "accounts/invite.html", {"invite": invite, "unusable": True}, status=410)
            _errors_to_messages(request, error)
            return redirect("studio:dashboard")
        if signup_form is not None:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        current_team_remember(request, membership)
        messages.success(request, f"Welcome to {invite.team}! You joined as {membership.get_role_display().lower()}.")
        return redirect("studio:dashboard")
    return render(request, "accounts/invite.html", {"invite": invite, "signup_form": signup_form})


def locked_out(request: HttpRequest, credentials: dict | None = None, *args, **kwargs) -> HttpResponse:
    """django-axes calls this (AXES_LOCKOUT_CALLABLE) once a username and address pair is locked out."""
    from django.conf import settings

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60) if settings.AXES_COOLOFF_TIME else None
    context = {"failure_limit": settings.AXES_FAILURE_LIMIT, "cooloff_minutes": minutes}
    return render(request, "registration/locked_out.html", context, status=429)
