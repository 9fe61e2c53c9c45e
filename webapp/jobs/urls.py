from django.urls import path

from webapp.jobs import views

app_name = "jobs"

urlpatterns = [
    path("runs/<int:pk>/stages/<str:kind>/retry/", views.stage_retry, name="stage_retry"),
    path("runs/<int:pk>/review/finish/", views.review_finish, name="review_finish"),
    path("runs/<int:pk>/directions/", views.run_directions, name="run_directions"),
    path("runs/<int:pk>/filter/", views.run_filter, name="run_filter"),
    path("runs/<int:pk>/calibration/", views.run_calibration, name="run_calibration"),
    path("runs/<int:pk>/training/", views.run_training, name="run_training"),
    path("runs/<int:pk>/cost/", views.run_cost, name="run_cost"),
    path("runs/<int:pk>/playground/", views.run_playground, name="run_playground"),
    path("probes/<int:pk>/", views.probe_detail, name="probe"),
]
