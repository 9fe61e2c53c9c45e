from __future__ import annotations

from django.urls import path

import webapp.ids  # noqa: F401  (registers the <id:…> converter)

from webapp.studio import views

app_name = "studio"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("projects/", views.project_list, name="projects"),
    path("projects/new/", views.project_new, name="project_new"),
    path("projects/<id:pk>/", views.project_detail, name="project"),
    path("projects/<id:pk>/edit/", views.project_edit, name="project_edit"),
    path("projects/<id:project_pk>/dimensions/new/", views.dimension_new, name="dimension_new"),
    path("projects/<id:project_pk>/dimensions/pair-row/", views.dimension_pair_row, name="dimension_pair_row"),
    path("projects/<id:project_pk>/dimensions/preset/", views.dimension_preset, name="dimension_preset"),
    path("projects/<id:project_pk>/runs/new/", views.run_new, name="run_new"),
    path("projects/<id:pk>/compare/", views.run_compare, name="run_compare"),
    path("dimensions/<id:pk>/", views.dimension_detail, name="dimension"),
    path("dimensions/<id:pk>/delete/", views.dimension_delete, name="dimension_delete"),
    path("models/", views.model_list, name="models"),
    path("models/new/", views.model_new, name="model_new"),
    path("models/<id:pk>/edit/", views.model_edit, name="model_edit"),
    path("models/<id:pk>/delete/", views.model_delete, name="model_delete"),
    path("models/<id:pk>/check/", views.model_check, name="model_check"),
    path("judges/", views.judge_list, name="judges"),
    path("judges/new/", views.judge_new, name="judge_new"),
    path("judges/<id:pk>/edit/", views.judge_edit, name="judge_edit"),
    path("judges/<id:pk>/delete/", views.judge_delete, name="judge_delete"),
    path("runs/<id:pk>/", views.run_detail, name="run"),
    path("runs/<id:pk>/launch/", views.run_launch, name="run_launch"),
    path("runs/<id:pk>/cancel/", views.run_cancel, name="run_cancel"),
]
