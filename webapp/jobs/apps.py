from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "webapp.jobs"
    label = "jobs"
    verbose_name = "Run execution"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Each module registers its own stage "on finish" steps and job kinds (webapp.jobs.hooks,
        # webapp.jobs.lifecycle); the state machine calls them without importing these modules.
        from webapp.jobs import audits, filtering, probes, services  # noqa: F401
