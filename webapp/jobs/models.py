"""What a run produces and how its work is split: instructions, pairs, direction artifacts, chunks.

A stage's work is one or more chunks. A chunk is claimed with a conditional UPDATE and its
results are written in the same transaction that marks it done, so a redelivered or re-queued
chunk can never store its results twice.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.studio.models import Dimension, Run, Stage


class Chunk(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    start = models.PositiveIntegerField(default=0, help_text="First work item (inclusive).")
    stop = models.PositiveIntegerField(default=0, help_text="Last work item (exclusive).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    compute = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["stage", "index"]
        constraints = [models.UniqueConstraint(fields=["stage", "index"], name="chunk_unique_index_per_stage")]
        indexes = [models.Index(fields=["stage", "status"], name="chunk_stage_status")]  # "is the stage done?"

    def __str__(self) -> str:
        return f"{self.stage} · chunk {self.index} [{self.start}:{self.stop}]"

    @property
    def size(self) -> int:
        return self.stop - self.start


def text_key(text: str) -> str:
    """An instruction's key for finding repeats: 16 hex digits of SHA-256 of its case-folded text."""
    import hashlib

    return hashlib.sha256(text.casefold().encode("utf-8")).hexdigest()[:16]


class Instruction(models.Model):
    class Source(models.TextChoices):
        SYNTHESIZED = "synthesized", "Synthesised"
        UPLOADED = "uploaded", "Uploaded"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="instructions")
    index = models.PositiveIntegerField()
    text = models.TextField()
    folded = models.CharField(max_length=16, blank=True, default="",
                              help_text="text_key(text): finds a repeated instruction by index, case-insensitively")
    source = models.CharField(max_length=16, choices=Source.choices)
    scores = models.JSONField(default=dict, blank=True, help_text="consistency per dimension name")
    consistency = models.FloatField(null=True, blank=True)
    winner = models.ForeignKey(Dimension, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    kept = models.BooleanField(default=False, db_index=True)
    rank = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Place in the filter's order (0 = most consistent) for every scored instruction; the kept ones are 0..k−1",
    )

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="instruction_unique_index_per_run")]
        indexes = [  # chunks read keyset ranges of these; the threshold preview counts along consistency
            models.Index(fields=["run", "rank"], name="instruction_run_rank"),
            models.Index(fields=["run", "consistency"], name="instruction_run_consistency"),
            models.Index(fields=["run", "folded"], name="instruction_run_folded"),  # synthesis drops repeats
        ]

    def __str__(self) -> str:
        return self.text[:60]


class FilterScores(models.Model):
    """A run's consistency scores, sorted ascending, as float64 bytes (8 MB at a million).

    Written once when the filter ranks the pool; the threshold preview reads it on every move of
    the slider instead of a million rows."""

    stage = models.OneToOneField(Stage, on_delete=models.CASCADE, related_name="filter_scores")
    count = models.PositiveIntegerField()
    values = models.BinaryField()

    def array(self):
        import numpy as np

        return np.frombuffer(bytes(self.values), dtype=np.float64)


class Pair(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="pairs")
    instruction = models.OneToOneField(Instruction, on_delete=models.CASCADE, related_name="pair")
    dimension = models.ForeignKey(Dimension, on_delete=models.SET_NULL, null=True, related_name="+")
    chosen = models.TextField()
    rejected = models.TextField()
    gamma_plus = models.FloatField()
    gamma_minus = models.FloatField()
    layers = models.JSONField(default=list)
    seed = models.PositiveIntegerField(default=0)
    chosen_tokens = models.PositiveIntegerField(default=0)
    rejected_tokens = models.PositiveIntegerField(default=0)
    quality = models.JSONField(
        default=dict, blank=True, help_text="chosen / rejected / unsteered: repetition, distinct2, length_ratio, foreign, loglik"
    )
    retries = models.JSONField(default=list, blank=True, help_text="each regeneration of a degenerate side")
    judge_verdict = models.FloatField(
        null=True, blank=True,
        help_text="The run's evaluation judge on this pair, in [−1, 1]: > 0 prefers chosen, < 0 rejected (reviewed runs)",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "instruction__rank", "pk"]

    def __str__(self) -> str:
        return f"pair for {self.instruction}"


class DirectionArtifact(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="directions")
    dimension = models.ForeignKey(Dimension, on_delete=models.CASCADE, related_name="+")
    path = models.CharField(max_length=500, help_text="safetensors file under MEDIA_ROOT")
    gguf_path = models.CharField(max_length=500, blank=True)
    diagnostics = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "dimension"], name="direction_unique_per_run_dimension")]


class Probe(models.Model):
    """One playground request: an instruction answered unsteered, at +γ and at −γ, side by side.
A job like a chunk (webapp.jobs.lifecycle): claimed, kept alive by its heartbeat, reaped.

    The worker streams the three responses token by token over the channel layer and stores
    them here as they grow (and in full at the end), so a page that opens late still sees them.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"

    SIDES = ("unsteered", "plus", "minus")

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="probes")
    dimension = models.ForeignKey(Dimension, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    instruction = models.TextField()
    gamma = models.FloatField()
    layer_start = models.PositiveIntegerField(null=True, blank=True)
    layer_end = models.PositiveIntegerField(null=True, blank=True)
    max_new_tokens = models.PositiveIntegerField(default=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    outputs = models.JSONField(default=dict, blank=True)
    message = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"probe {self.pk}: {self.instruction[:40]}"

    @property
    def stalled(self) -> bool:
        """Running without a heartbeat for a while: its worker most likely stopped (the periodic
        check fails it soon)."""
        from django.utils import timezone

        last = self.heartbeat_at or self.started_at
        return self.status == self.Status.RUNNING and last is not None and (
            timezone.now() - last).total_seconds() > settings.ICON2_STALE_AFTER_S

    @property
    def layers_label(self) -> str:
        return "middle third" if self.layer_start is None else f"{self.layer_start}–{self.layer_end}"


class RunAudit(models.Model):
    """One bias audit of a run (icon2engine.audit): per dimension, the direction's overlap with the
    reference directions and what the generated pairs differ in. Asked for from the Audit tab,
    done by the interactive worker; the row is the truth (status, result, error).

    A *remedy* audit first projects references out of one dimension's direction (``remedy``), has
    the stages after the filter run again, waits for the new pairs, then audits them; ``before``
    is the audit it is shown beside."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        WAITING = "waiting", "Waiting for the regenerated pairs"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="audits")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    result = models.JSONField(default=dict, blank=True, help_text="{dimensions: [{id, name, overlap, pairs, verdict}], flagged}")
    remedy = models.JSONField(default=dict, blank=True,
                              help_text="{dimension: id, against: [reference keys], applied: bool, original_path}; empty for a plain audit")
    before = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                               help_text="the audit this one is compared with (a remedy's audit of the original direction)")
    message = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"audit {self.pk} of {self.run}"
