from django.urls import path

import webapp.ids  # noqa: F401  (registers the <id:…> converter)

from webapp.jobs import views

app_name = "jobs"

urlpatterns = [
    path("runs/<id:pk>/stages/<str:kind>/retry/", views.stage_retry, name="stage_retry"),
    path("runs/<id:pk>/review/finish/", views.review_finish, name="review_finish"),
    path("runs/<id:pk>/directions/", views.run_directions, name="run_directions"),
    path("runs/<id:pk>/filter/", views.run_filter, name="run_filter"),
    path("runs/<id:pk>/calibration/", views.run_calibration, name="run_calibration"),
    path("runs/<id:pk>/training/", views.run_training, name="run_training"),
    path("runs/<id:pk>/cost/", views.run_cost, name="run_cost"),
    path("runs/<id:pk>/audit/", views.run_audit, name="run_audit"),
    path("runs/<id:pk>/audit/remedy/", views.run_audit_remedy, name="run_audit_remedy"),
    path("runs/<id:pk>/playground/", views.run_playground, name="run_playground"),
    path("probes/<id:pk>/", views.probe_detail, name="probe"),
]
