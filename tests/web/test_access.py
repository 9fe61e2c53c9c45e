"""Who may read and who may change what, walked over every URL, full page and htmx partial.

Members whose role lacks a permission get 403; people outside the team get 404 for every
URL that names one of its objects, so they cannot even learn that it exists.
"""

from __future__ import annotations

import pytest
from django.urls import get_resolver, reverse

from webapp.accounts.roles import ROLE_PERMS, Perm

from .walk import CURRENT_TEAM_ROUTES, PERSONAL_URL_NAMES, TEAM_ROUTES, TOKEN_URL_NAMES, Route

MEMBERS = ["owner", "engineer", "annotator", "viewer"]
ROLE_OF = {"owner": "owner", "engineer": "engineer", "annotator": "annotator", "viewer": "viewer"}


def _call(client, route: Route, world):
    url = reverse(route.name, kwargs=route.kwargs(world))
    if route.method == "GET":
        return client.get(url)
    return client.post(url, route.data(world) if route.data else {})


def _expected(person: str, route: Route, *, team_scoped: bool) -> int | None:
    """403/404 for refusals; None when the request must succeed."""
    if person == "outsider":
        return 404 if team_scoped else None  # outside URLs he acts as owner of his own team
    return None if route.perm in ROLE_PERMS[ROLE_OF[person]] else 403


def _assert_outcome(response, expected: int | None, *, route: Route, htmx: bool) -> None:
    if expected is not None:
        assert response.status_code == expected, response.content[:500]
        return
    assert response.status_code in (200, 302), f"{response.status_code}: {response.content[:800]!r}"
    is_page = response.get("Content-Type", "").startswith("text/html")
    if route.method == "GET" and response.status_code == 200 and is_page and route.name != "studio:dimension_pair_row":
        has_layout = b'class="topbar"' in response.content
        assert has_layout is (not htmx), "htmx requests get the partial, full requests the whole page"


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize("person", [*MEMBERS, "outsider"])
@pytest.mark.parametrize("route", TEAM_ROUTES, ids=lambda r: r.id)
def test_every_team_url_answers_each_person_by_role(route, person, htmx, people, ours, client_for):
    client = client_for(people[person], htmx=htmx)
    response = _call(client, route, ours)
    _assert_outcome(response, _expected(person, route, team_scoped=True), route=route, htmx=htmx)


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize("route", TEAM_ROUTES, ids=lambda r: r.id)
def test_our_members_get_404_for_every_url_of_another_team(route, htmx, people, theirs, client_for):
    for person in MEMBERS:
        response = _call(client_for(people[person], htmx=htmx), route, theirs)
        assert response.status_code == 404, f"{person}: {response.status_code}"


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize("person", [*MEMBERS, "outsider"])
@pytest.mark.parametrize("route", CURRENT_TEAM_ROUTES, ids=lambda r: r.id)
def test_current_team_pages_answer_each_person_by_role(route, person, htmx, people, ours, client_for):
    response = _call(client_for(people[person], htmx=htmx), route, ours)
    _assert_outcome(response, _expected(person, route, team_scoped=False), route=route, htmx=htmx)


def test_the_outsider_sees_only_his_own_team_on_the_dashboard(outsider, ours, theirs, client_for):
    content = client_for(outsider).get(reverse("studio:dashboard")).content.decode()
    assert "Secret project" in content
    assert "Support tone" not in content and "Acme alignment" not in content


def test_nobody_may_edit_the_built_in_model(people, ours, client_for):
    from webapp.studio.models import ModelSpec

    builtin = ModelSpec.objects.get(team__isnull=True)
    for person, user in people.items():
        client = client_for(user)
        assert client.get(reverse("studio:model_edit", args=[builtin.pk])).status_code == 403, person
        assert client.post(reverse("studio:model_delete", args=[builtin.pk])).status_code == 403, person
    assert ModelSpec.objects.filter(pk=builtin.pk).exists()


@pytest.mark.parametrize("route", [*TEAM_ROUTES, *CURRENT_TEAM_ROUTES], ids=lambda r: r.id)
def test_anonymous_visitors_are_sent_to_log_in(route, client, ours):
    response = _call(client, route, ours)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_walk_covers_every_url_of_the_app():
    walked = {route.name for route in [*TEAM_ROUTES, *CURRENT_TEAM_ROUTES]} | PERSONAL_URL_NAMES | TOKEN_URL_NAMES
    resolver = get_resolver()
    names = set()
    for namespace in ("studio", "accounts", "review"):
        _, sub = resolver.namespace_dict[namespace]
        names |= {f"{namespace}:{name}" for name in sub.reverse_dict if isinstance(name, str)}
    assert names - walked == set(), "add new URLs to tests/web/walk.py"


def test_role_table_grants_what_the_issue_says():
    assert ROLE_PERMS["owner"] == frozenset(Perm)
    assert Perm.EDIT in ROLE_PERMS["engineer"] and Perm.MANAGE not in ROLE_PERMS["engineer"]
    assert ROLE_PERMS["annotator"] == {Perm.READ, Perm.REVIEW}
    assert ROLE_PERMS["viewer"] == {Perm.READ}
