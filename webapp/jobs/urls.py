from django.urls import path

from webapp.jobs import views

app_name = "jobs"

urlpatterns = [
    path("runs/<int:pk>/stages/<str:kind>/retry/", views.stage_retry, name="stage_retry"),
    path("runs/<int:pk>/review/finish/", views.review_finish, name="review_finish"),
]
