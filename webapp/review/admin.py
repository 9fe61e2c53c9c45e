from django.contrib import admin

from webapp.review.models import ApiToken, AuditEvent, PairEdit, Resolution, ReviewAssignment, Verdict


@admin.register(ReviewAssignment)
class ReviewAssignmentAdmin(admin.ModelAdmin):
    list_display = ("pair", "annotator", "left_is_chosen", "created_at")


@admin.register(Verdict)
class VerdictAdmin(admin.ModelAdmin):
    list_display = ("assignment", "choice", "order", "created_at", "voided_at")
    list_filter = ("order",)


@admin.register(PairEdit)
class PairEditAdmin(admin.ModelAdmin):
    list_display = ("pair", "side", "editor", "created_at")


@admin.register(Resolution)
class ResolutionAdmin(admin.ModelAdmin):
    list_display = ("pair", "outcome", "resolved_by", "based_on_version", "created_at")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("run", "action", "actor", "pair", "created_at")
    list_filter = ("action",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "prefix", "created_at", "last_used_at")
    readonly_fields = ("token_hash", "prefix")
