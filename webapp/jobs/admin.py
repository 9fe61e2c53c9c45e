from django.contrib import admin

from webapp.jobs.models import Chunk, DirectionArtifact, FilterScores, Instruction, Pair, Probe, RunAudit


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = ("stage", "index", "start", "stop", "status", "attempts", "worker", "heartbeat_at")
    list_filter = ("status",)


@admin.register(Instruction)
class InstructionAdmin(admin.ModelAdmin):
    list_display = ("run", "index", "text", "consistency", "winner", "kept")
    list_filter = ("kept", "source")
    search_fields = ("text",)


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ("run", "instruction", "dimension", "gamma_plus", "gamma_minus", "created_at")


@admin.register(DirectionArtifact)
class DirectionArtifactAdmin(admin.ModelAdmin):
    list_display = ("run", "dimension", "path", "created_at")


@admin.register(FilterScores)
class FilterScoresAdmin(admin.ModelAdmin):
    list_display = ("stage", "count")


@admin.register(Probe)
class ProbeAdmin(admin.ModelAdmin):
    list_display = ("run", "instruction", "gamma", "status", "attempts", "worker", "heartbeat_at", "created_at")
    list_filter = ("status",)


@admin.register(RunAudit)
class RunAuditAdmin(admin.ModelAdmin):
    list_display = ("run", "status", "attempts", "worker", "heartbeat_at", "created_at", "finished_at")
    list_filter = ("status",)
