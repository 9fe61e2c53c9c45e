from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

import webapp.ids  # noqa: F401  (registers the <id:…> converter)

admin.site.site_header = "Icon² Studio administration"
admin.site.site_title = "Icon² Studio admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("webapp.accounts.urls")),
    path("", include("webapp.jobs.urls")),
    path("", include("webapp.review.urls")),
    path("", include("webapp.studio.urls")),
]
