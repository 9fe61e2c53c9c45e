"""Reads for the studio. Every `*_get_for_user` raises Http404 unless the user belongs to the
object's team (its existence is not revealed), and PermissionDenied if their role lacks `perm`."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404

from webapp.accounts.models import Team
from webapp.accounts.roles import Perm
from webapp.accounts.selectors import role_require
from webapp.studio.models import Dimension, Judge, ModelSpec, Project, PromptPair, Run, Stage

User = AbstractBaseUser | AnonymousUser


def project_list_for_team(*, team: Team) -> QuerySet[Project]:
    return team.projects.annotate(
        dimension_count=Count("dimensions", distinct=True), run_count=Count("runs", distinct=True)
    ).order_by("name", "pk")


def project_get_for_user(*, user: User, pk: int, perm: Perm = Perm.READ) -> Project:
    project = Project.objects.select_related("team").filter(pk=pk).first()
    if project is None:
        raise Http404("No such project.")
    role_require(user=user, team=project.team_id, perm=perm)
    return project


def dimension_list_for_project(*, project: Project) -> QuerySet[Dimension]:
    return project.dimensions.prefetch_related("pairs").order_by("name", "pk")


def dimension_get_for_user(*, user: User, pk: int, perm: Perm = Perm.READ) -> Dimension:
    dimension = (
        Dimension.objects.select_related("project__team")
        .prefetch_related(Prefetch("pairs", queryset=PromptPair.objects.order_by("order", "pk")))
        .filter(pk=pk)
        .first()
    )
    if dimension is None:
        raise Http404("No such dimension.")
    role_require(user=user, team=dimension.project.team_id, perm=perm)
    return dimension


def model_list_for_team(*, team: Team) -> QuerySet[ModelSpec]:
    """The team's own models and the built-in ones, built-in first."""
    return ModelSpec.objects.filter(Q(team=team) | Q(team__isnull=True)).order_by("team_id", "name", "pk")


def _team_or_builtin_get(rows: QuerySet, *, user: User, pk: int, perm: Perm, what: str):
    """A row of the user's team, or a built-in one (team=None) that anyone may read but nobody change."""
    row = rows.filter(pk=pk).first()
    if row is None or not user.is_authenticated:
        raise Http404(f"No such {what}.")
    if row.team_id is None:
        if perm is not Perm.READ:
            raise PermissionDenied(f"Built-in {what}s cannot be changed.")
        return row
    role_require(user=user, team=row.team_id, perm=perm)
    return row


def model_get_for_user(*, user: User, pk: int, perm: Perm = Perm.READ) -> ModelSpec:
    return _team_or_builtin_get(ModelSpec.objects, user=user, pk=pk, perm=perm, what="model")


def judge_list_for_team(*, team: Team) -> QuerySet[Judge]:
    """The team's own judges and the built-in ones, built-in first."""
    return Judge.objects.filter(Q(team=team) | Q(team__isnull=True)).order_by("team_id", "name", "pk")


def judge_get_for_user(*, user: User, pk: int, perm: Perm = Perm.READ) -> Judge:
    return _team_or_builtin_get(Judge.objects, user=user, pk=pk, perm=perm, what="judge")


def run_list_for_team(*, team: Team, limit: int | None = None) -> QuerySet[Run]:
    runs = Run.objects.filter(project__team=team).select_related("project", "model").order_by("-created_at", "-pk")
    return runs[:limit] if limit else runs


def run_list_for_project(*, project: Project) -> QuerySet[Run]:
    return project.runs.select_related("model").prefetch_related("dimensions").order_by("-created_at", "-pk")


def run_get_for_user(*, user: User, pk: int, perm: Perm = Perm.READ) -> Run:
    run = (
        Run.objects.select_related("project__team", "model", "created_by")
        .prefetch_related("dimensions", Prefetch("stages", queryset=Stage.objects.order_by("order")))
        .filter(pk=pk)
        .first()
    )
    if run is None:
        raise Http404("No such run.")
    role_require(user=user, team=run.project.team_id, perm=perm)
    return run


def run_name_suggest(*, project: Project) -> str:
    taken = {name.lower() for name in project.runs.values_list("name", flat=True)}
    number = len(taken) + 1
    while f"run {number}" in taken:
        number += 1
    return f"Run {number}"
