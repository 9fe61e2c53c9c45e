from django.apps import AppConfig


class StudioConfig(AppConfig):
    name = "webapp.studio"
    label = "studio"
    verbose_name = "Studio"

    def ready(self) -> None:
        # The model check registers its job kind with the periodic check (webapp.jobs.lifecycle).
        from webapp.studio import model_checks  # noqa: F401
