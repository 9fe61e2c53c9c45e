"""Roles and what each may do. Checked on the server by selectors and services."""

from __future__ import annotations

import enum

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ENGINEER = "engineer", "Engineer"
    ANNOTATOR = "annotator", "Annotator"
    VIEWER = "viewer", "Viewer"


class Perm(enum.Enum):
    READ = "read"
    REVIEW = "review"  # audit steered pairs (the review issue)
    EDIT = "edit"  # projects, dimensions, models, runs, launching
    MANAGE = "manage"  # team settings, invites, roles


ROLE_PERMS: dict[str, frozenset[Perm]] = {
    Role.OWNER: frozenset(Perm),
    Role.ENGINEER: frozenset({Perm.READ, Perm.REVIEW, Perm.EDIT}),
    Role.ANNOTATOR: frozenset({Perm.READ, Perm.REVIEW}),
    Role.VIEWER: frozenset({Perm.READ}),
}

ROLE_HELP: dict[str, str] = {
    Role.OWNER: "Everything, including team settings, invites and roles.",
    Role.ENGINEER: "Defines dimensions and models, launches runs, trains.",
    Role.ANNOTATOR: "Reads everything and reviews steered pairs.",
    Role.VIEWER: "Reads everything, changes nothing.",
}


def role_allows(role: str | None, perm: Perm) -> bool:
    return role is not None and perm in ROLE_PERMS.get(role, frozenset())
