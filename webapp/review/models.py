"""Human review of steered pairs: who reviews what, their verdicts, edits, a lead's resolutions,
the audit trail and the API tokens a training script uses to pull the reviewed dataset.

Verdicts are rows per annotator (never a field on the pair), so two people reviewing the same
pair at once never overwrite each other. Undo voids a verdict instead of deleting it.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.jobs.models import Pair
from webapp.studio.models import Run


class ReviewAssignment(models.Model):
    """One pair for one annotator. ``run``, ``position`` and ``reviewed_at`` repeat what the pair and
    the verdicts say, so that "my next pair" and "my last verdict" are one index seek at any size;
    the review services keep them in step with the verdicts (the verdicts stay the truth)."""

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="review_assignments")
    left_is_chosen = models.BooleanField(help_text="Randomised per assignment; the annotator never sees it.")
    created_at = models.DateTimeField(auto_now_add=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, null=True, related_name="+", help_text="The pair's run.")
    position = models.PositiveIntegerField(null=True, help_text="The pair's place in review order (its instruction's rank).")
    reviewed_at = models.DateTimeField(null=True, blank=True, help_text="When this annotator's standing verdict was given.")

    class Meta:
        ordering = ["pair__instruction__rank", "pair_id", "pk"]
        constraints = [models.UniqueConstraint(fields=["pair", "annotator"], name="assignment_unique_pair_annotator")]
        indexes = [
            # "my next pair": the open ones in review order (a partial index, so the order needs no sort)
            models.Index(fields=["run", "annotator", "position", "pair"], condition=models.Q(reviewed_at__isnull=True),
                         name="assignment_open"),
            models.Index(fields=["run", "annotator", "reviewed_at"], name="assignment_reviewed"),  # "my last verdict"
        ]

    def save(self, *args, **kwargs) -> None:
        if self.run_id is None or self.position is None:
            row = Pair.objects.filter(pk=self.pair_id).values_list("run_id", "instruction__rank").first()
            if row is not None:
                self.run_id, self.position = row[0], row[1] if row[1] is not None else 0
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.pair} → {self.annotator}"


class Verdict(models.Model):
    class Choice(models.TextChoices):
        LEFT = "left", "Left better"
        RIGHT = "right", "Right better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"
        SKIP = "skip", "Skip"

    class Order(models.TextChoices):
        """The verdict in terms of the pair: does the human confirm the steering direction?"""

        CONFIRM = "confirm", "Chosen is better (confirms γ⁺)"
        SWAP = "swap", "Rejected is better (swap)"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"
        SKIP = "skip", "Skipped"

    assignment = models.ForeignKey(ReviewAssignment, on_delete=models.CASCADE, related_name="verdicts")
    choice = models.CharField(max_length=10, choices=Choice.choices)
    order = models.CharField(max_length=10, choices=Order.choices)
    rationale = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    voided_at = models.DateTimeField(null=True, blank=True, help_text="Set when the annotator undid it.")

    class Meta:
        ordering = ["created_at", "pk"]


class PairEdit(models.Model):
    class Side(models.TextChoices):
        CHOSEN = "chosen", "Chosen"
        REJECTED = "rejected", "Rejected"

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="edits")
    side = models.CharField(max_length=10, choices=Side.choices)
    original = models.TextField(help_text="The text before this edit.")
    text = models.TextField()
    editor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]


class Resolution(models.Model):
    class Outcome(models.TextChoices):
        CONFIRM = "confirm", "Keep the order (chosen is better)"
        SWAP = "swap", "Swap chosen and rejected"
        DROP = "drop", "Drop the pair"

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="resolutions")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    based_on_version = models.PositiveIntegerField(help_text="The pair's review version the lead saw.")
    note = models.TextField(blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]


class AuditEvent(models.Model):
    class Action(models.TextChoices):
        VERDICT = "verdict", "Verdict"
        UNDO = "undo", "Undo"
        EDIT = "edit", "Edit"
        RESOLVE = "resolve", "Resolution"
        ASSIGN = "assign", "Assignment"
        EXPORT = "export", "Export"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="review_events")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    action = models.CharField(max_length=10, choices=Action.choices)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    @property
    def summary(self) -> str:
        return " · ".join(f"{key}: {value}" for key, value in self.detail.items() if value not in ("", None))


class ApiToken(models.Model):
    """A per-user token; only its SHA-256 is stored, the token itself is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80, default="training script")
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
