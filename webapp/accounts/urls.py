from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

import webapp.ids  # noqa: F401  (registers the <id:…> converter)

from webapp.accounts import views

app_name = "accounts"

urlpatterns = [
    path("password/", auth_views.PasswordChangeView.as_view(success_url=reverse_lazy("accounts:password_change_done")), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("teams/new/", views.team_new, name="team_new"),
    path("teams/switch/", views.team_switch, name="team_switch"),
    path("teams/<id:team_pk>/", views.team_settings, name="team_settings"),
    path("teams/<id:team_pk>/members/<id:membership_pk>/role/", views.member_role, name="member_role"),
    path("teams/<id:team_pk>/members/<id:membership_pk>/remove/", views.member_remove, name="member_remove"),
    path("teams/<id:team_pk>/invites/", views.invite_new, name="invite_new"),
    path("teams/<id:team_pk>/invites/<id:invite_pk>/revoke/", views.invite_revoke, name="invite_revoke"),
    path("invites/<str:token>/", views.invite_accept, name="invite"),
]
