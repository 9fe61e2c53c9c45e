from django.urls import path

import webapp.ids  # noqa: F401  (registers the <id:…> converter)

from webapp.review import views

app_name = "review"

urlpatterns = [
    path("runs/<id:pk>/review/", views.queue, name="queue"),
    path("runs/<id:pk>/review/verdict/", views.verdict, name="verdict"),
    path("runs/<id:pk>/review/undo/", views.undo, name="undo"),
    path("runs/<id:pk>/review/edit/", views.edit, name="edit"),
    path("runs/<id:pk>/review/agreement/", views.lead, name="lead"),
    path("runs/<id:pk>/review/pairs/<id:pair_pk>/resolve/", views.resolve, name="resolve"),
    path("runs/<id:pk>/export/<str:fmt>/", views.download, name="download"),
    path("api/runs/<id:pk>/dataset.<str:fmt>", views.api_dataset, name="api_dataset"),
    path("account/tokens/new/", views.api_token_new, name="api_token_new"),
    path("account/tokens/<id:token_pk>/revoke/", views.api_token_revoke, name="api_token_revoke"),
]
