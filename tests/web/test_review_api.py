"""The dataset over HTTP for training scripts, with a per-user API token."""
from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from webapp.review import services
from webapp.review.models import ApiToken

from .review_helpers import make_pairs

pytestmark = pytest.mark.django_db


def _body(response) -> bytes:
    """A response's bytes; exports stream (JSONL) or come from a file (Parquet)."""
    return b"".join(response.streaming_content) if response.streaming else response.content


def _url(run, fmt="jsonl"):
    return reverse("review:api_dataset", kwargs={"pk": run.pk, "fmt": fmt})


def test_it_refuses_a_request_without_a_token(ours):
    response = Client().get(_url(ours.run))
    assert response.status_code == 401 and "Bearer" in response.content.decode()


def test_it_refuses_a_wrong_token(ours):
    response = Client().get(_url(ours.run), headers={"Authorization": "Bearer icn2_not-a-real-token"})
    assert response.status_code == 401


def test_eddie_pulls_the_dataset_with_his_token(ours, engineer):
    ours.run.require_review = False
    ours.run.save()
    make_pairs(ours.run, 2)
    token = services.api_token_create(user=engineer)
    response = Client().get(_url(ours.run), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    rows = [json.loads(line) for line in _body(response).decode().splitlines()]
    assert len(rows) == 2 and rows[0]["verdict"] == "not_reviewed"
    assert ApiToken.objects.get(user=engineer).last_used_at is not None
    assert token not in str(ApiToken.objects.values_list("token_hash", flat=True)), "only a hash is stored"


def test_a_token_gives_no_access_to_another_teams_run(ours, theirs, engineer):
    token = services.api_token_create(user=engineer)
    response = Client().get(_url(theirs.run), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404


def test_anna_the_annotator_cannot_pull_the_dataset(ours, annotator):
    token = services.api_token_create(user=annotator)
    response = Client().get(_url(ours.run, "parquet"), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_olivia_makes_a_token_on_the_export_page_and_revokes_it(ours, owner, client_for):
    client = client_for(owner)
    back = reverse("review:lead", args=[ours.run.pk])
    response = client.post(reverse("review:api_token_new"), {"name": "trainer", "next": back})
    page = response.content.decode()
    assert response.status_code == 200 and "shown once" in page
    secret = page.split('id="new-token"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    assert secret.startswith(services.TOKEN_PREFIX)
    # On the page, never stored by a cache, and not carried in the (signed, unencrypted) messages cookie.
    assert "no-store" in response["Cache-Control"]
    assert all(secret not in morsel.value for morsel in response.cookies.values())
    assert all(secret not in morsel.value for morsel in client.cookies.values())
    token = ApiToken.objects.get(user=owner)
    client.post(reverse("review:api_token_revoke", args=[token.pk]), {"next": back})
    assert not ApiToken.objects.exists()
