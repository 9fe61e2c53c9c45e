from django.contrib import admin

from webapp.studio.models import Dimension, Judge, ModelCheck, ModelSpec, Project, PromptPair, Run, Stage


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "created_by", "created_at"]
    list_filter = ["team"]
    search_fields = ["name"]


class PromptPairInline(admin.StackedInline):
    model = PromptPair
    extra = 0


@admin.register(Dimension)
class DimensionAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "preset_key", "refusal_allowed", "updated_at"]
    list_filter = ["project__team"]
    search_fields = ["name"]
    inlines = [PromptPairInline]


@admin.register(PromptPair)
class PromptPairAdmin(admin.ModelAdmin):
    list_display = ["dimension", "order", "positive", "negative"]
    list_filter = ["dimension__project"]


@admin.register(ModelSpec)
class ModelSpecAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "kind", "path_or_id", "revision", "num_layers"]
    list_filter = ["kind", "team"]


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    """The API key stays write-only here too: it is neither listed nor shown in the change form."""

    list_display = ["name", "team", "kind", "better", "model_name", "base_url"]
    list_filter = ["kind", "team"]
    search_fields = ["name"]
    exclude = ["api_key"]


class StageInline(admin.TabularInline):
    model = Stage
    extra = 0
    fields = ["order", "kind", "status", "progress_done", "progress_total", "message", "attempts"]
    readonly_fields = ["order", "kind"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "model", "status", "created_by", "created_at"]
    list_filter = ["status", "project__team"]
    search_fields = ["name"]
    filter_horizontal = ["dimensions"]
    inlines = [StageInline]


@admin.register(Stage)
class StageAdmin(admin.ModelAdmin):
    list_display = ["run", "order", "kind", "status", "progress_done", "progress_total", "heartbeat_at"]
    list_filter = ["status", "kind"]


@admin.register(ModelCheck)
class ModelCheckAdmin(admin.ModelAdmin):
    list_display = ("model", "status", "worker", "created_at")
    list_filter = ("status",)
