"""Every model is in the Django admin, and its pages open."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse


def test_every_model_of_ours_is_registered():
    ours = [m for app in ("accounts", "studio") for m in apps.get_app_config(app).get_models()]
    assert ours and [m.__name__ for m in ours if m not in admin.site._registry] == []


@pytest.mark.parametrize("app", ["accounts", "studio"])
def test_a_superuser_opens_every_list_and_change_page(app, admin_client, ours):
    for model in apps.get_app_config(app).get_models():
        meta = model._meta
        assert admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")).status_code == 200
        obj = model.objects.first()
        if obj is not None:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
            assert admin_client.get(url).status_code == 200, url


def test_team_members_are_not_let_into_the_admin(client_for, owner):
    response = client_for(owner).get(reverse("admin:index"))
    assert response.status_code == 302
