from __future__ import annotations

from django.http import HttpRequest

from webapp import limits
from webapp.accounts.roles import Perm, role_allows
from webapp.accounts.selectors import current_membership, membership_list_for_user


LIMITS = {name: getattr(limits, name) for name in dir(limits) if name.endswith("_MAX")}


def teams(request: HttpRequest) -> dict:
    """Layout context: which base template to extend, the current team and the team switcher."""
    htmx = getattr(request, "htmx", None)
    context: dict = {"base_template": "_partial.html" if htmx and not htmx.boosted else "base.html", "limits": LIMITS}
    if getattr(request, "user", None) is not None and request.user.is_authenticated:
        membership = current_membership(request)
        context["current_membership"] = membership
        context["my_memberships"] = membership_list_for_user(user=request.user)
        context["current_can_edit"] = membership is not None and role_allows(membership.role, Perm.EDIT)
    return context
