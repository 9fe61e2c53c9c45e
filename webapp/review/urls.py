from django.urls import path

from webapp.review import views

app_name = "review"

urlpatterns = [
    path("runs/<int:pk>/review/", views.queue, name="queue"),
    path("runs/<int:pk>/review/verdict/", views.verdict, name="verdict"),
    path("runs/<int:pk>/review/undo/", views.undo, name="undo"),
    path("runs/<int:pk>/review/edit/", views.edit, name="edit"),
    path("runs/<int:pk>/review/agreement/", views.lead, name="lead"),
    path("runs/<int:pk>/review/pairs/<int:pair_pk>/resolve/", views.resolve, name="resolve"),
    path("runs/<int:pk>/export/<str:fmt>/", views.download, name="download"),
    path("api/runs/<int:pk>/dataset.<str:fmt>", views.api_dataset, name="api_dataset"),
    path("account/tokens/new/", views.api_token_new, name="api_token_new"),
    path("account/tokens/<int:token_pk>/revoke/", views.api_token_revoke, name="api_token_revoke"),
]
