from __future__ import annotations

import re
from pathlib import PurePosixPath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower

from icon2engine.config import BOUNDS
from icon2engine.endpoints import url_origin, url_problem
from icon2engine.formats import default_layers
from webapp.limits import PROMPT_MAX, RATIONALE_MAX, text_check
from webapp.accounts.models import Team
from webapp.studio.validators import bound_validators

MAX_INSTRUCTIONS = 1_000_000  # per run: the paper's pool
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class Project(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(Lower("name"), "team", name="project_unique_name_per_team")]

    def __str__(self) -> str:
        return self.name


class Dimension(models.Model):
    """What "better" means for a run: contrastive system-prompt pairs (P+, P-)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dimensions")
    name = models.CharField(max_length=80)
    description = models.TextField(blank=True)
    feature_instructions = models.TextField(
        blank=True,
        help_text="Optional. One instruction per line, used to extract the direction. "
        "Leave empty to use instructions the run synthesises.",
    )
    preset_key = models.CharField(max_length=40, blank=True, help_text="The preset this was copied from, if any.")
    refusal_allowed = models.BooleanField(
        default=False,
        help_text="Refusing is part of this dimension (harmlessness: declining a harmful request). The quality gate then "
        "lets the chosen side refuse; otherwise a refusing side is regenerated or dropped.",
    )
    judge = models.ForeignKey(
        "Judge", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="How this dimension is measured: its runs calibrate and evaluate with this judge unless they pick another.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(Lower("name"), "project", name="dimension_unique_name_per_project")]

    def __str__(self) -> str:
        return self.name

    @property
    def feature_instruction_list(self) -> list[str]:
        return [line.strip() for line in self.feature_instructions.splitlines() if line.strip()]


class PromptPair(models.Model):
    dimension = models.ForeignKey(Dimension, on_delete=models.CASCADE, related_name="pairs")
    positive = models.TextField(help_text="System prompt for the behaviour you want (P+).")
    negative = models.TextField(help_text="System prompt for its opposite (P−).")
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "pk"]

    def __str__(self) -> str:
        return f"{self.positive[:40]} / {self.negative[:40]}"

    def clean(self) -> None:
        errors = {}
        for side, label in (("positive", "positive prompt"), ("negative", "negative prompt")):
            try:
                text_check(getattr(self, side), field=side, label=label, max_length=PROMPT_MAX)
            except ValidationError as error:
                errors[side] = error.message_dict[side][0]
        if errors:
            raise ValidationError(errors)
        if not self.positive.strip():
            errors["positive"] = "Write the positive system prompt."
        if not self.negative.strip():
            errors["negative"] = "Write the negative system prompt."
        if not errors and self.positive.strip() == self.negative.strip():
            errors["negative"] = "The two prompts are identical; they must pull in opposite directions."
        if errors:
            raise ValidationError(errors)


class ModelSpec(models.Model):
    """A language model a run can use. team=None marks a built-in model every team can use."""

    class Kind(models.TextChoices):
        EMBEDDED = "embedded", "Embedded SmolLM2-135M-Instruct"
        LOCAL_DIR = "local_dir", "Local directory"
        GGUF = "gguf", "GGUF file"
        HUB = "hub", "Hugging Face hub id"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="models")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.LOCAL_DIR)
    path_or_id = models.CharField(
        max_length=500,
        blank=True,
        help_text="Folder or .gguf file on the worker machine, or a hub id such as HuggingFaceTB/SmolLM2-360M-Instruct.",
    )
    revision = models.CharField(max_length=100, blank=True, help_text="Hub only: a branch, tag or commit; blank = main.")
    layers_attr = models.CharField(
        max_length=120,
        blank=True,
        help_text="Attribute path to the decoder layers, e.g. model.layers. Blank = detect automatically.",
    )
    num_layers = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(1024)],
        help_text="Number of decoder layers, if known (1–1024; used to check layer bands).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team_id", "name", "pk"]
        verbose_name = "model"
        constraints = [models.UniqueConstraint(Lower("name"), "team", name="modelspec_unique_name_per_team")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_builtin(self) -> bool:
        return self.team_id is None

    def clean(self) -> None:
        for name in ("name", "path_or_id", "revision", "layers_attr"):
            text_check(getattr(self, name), field=name, label=self._meta.get_field(name).verbose_name, max_length=10**6)
        self.path_or_id = self.path_or_id.strip()
        self.revision = self.revision.strip()
        self.layers_attr = self.layers_attr.strip()
        errors: dict[str, str] = {}
        if self.kind in (self.Kind.LOCAL_DIR, self.Kind.GGUF) and not self.path_or_id:
            errors["path_or_id"] = "Give the path on the worker machine."
        elif self.kind == self.Kind.GGUF and PurePosixPath(self.path_or_id).suffix.lower() != ".gguf":
            errors["path_or_id"] = "A GGUF model is a file ending in .gguf."
        elif self.kind == self.Kind.HUB and not HUB_ID_RE.match(self.path_or_id):
            errors["path_or_id"] = "A hub id looks like org/name, e.g. HuggingFaceTB/SmolLM2-135M-Instruct."
        if self.revision and self.kind != self.Kind.HUB:
            errors["revision"] = "Only hub models have a revision; leave this blank."
        if self.layers_attr and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", self.layers_attr):
            errors["layers_attr"] = "Use a dotted attribute path such as model.layers."
        if errors:
            raise ValidationError(errors)


class ModelCheck(models.Model):
    """One check of a model by the interactive worker (icon2engine.model_check): what it is, how it
    is prompted, and whether its own unsteered answers are fluent. A job like a playground try:
    claimed by a conditional UPDATE, kept alive by its heartbeat, failed by the periodic check when
    its worker stops (webapp.studio.model_checks). The newest check of a model is its verdict."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Finished"  # the check ran; ``result["ok"]`` says whether the model passed
        FAILED = "failed", "Could not run"  # e.g. the model could not be loaded

    model = models.ForeignKey(ModelSpec, on_delete=models.CASCADE, related_name="checks")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    result = models.JSONField(default=dict, blank=True, help_text="ModelCheck.as_dict() of icon2engine.model_check.")
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
        return f"check of {self.model_id} ({self.status})"

    @property
    def done(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def passed(self) -> bool:
        return self.status == self.Status.SUCCEEDED and bool(self.result.get("ok"))

    @property
    def flags(self) -> list[dict]:
        return list(self.result.get("flags") or [])

    @property
    def answers_fluent(self) -> int:
        """How many of the unsteered answers the gate's fluency measures passed."""
        return sum(1 for answer in self.result.get("answers") or [] if not answer.get("reasons"))


class Judge(models.Model):
    """How a run's pairs and its trained model are scored. team=None marks a built-in judge.

    The API key of an LLM endpoint is write-only: forms never render it, and nothing but the
    worker, which builds the engine's judge from `engine_config`, reads it."""

    class Kind(models.TextChoices):
        LEXICON = "lexicon", "Sentiment lexicon (VADER)"
        LENGTH = "length", "Length in words"
        FORMALITY = "formality", "Formality"
        REWARD_MODEL = "reward_model", "Reward model (local folder)"
        LLM = "llm", "LLM endpoint (OpenAI-compatible)"
        SELF = "self", "Self: the run's own model, asked"

    class Better(models.TextChoices):
        HIGHER = "higher", "Higher scores are better"
        LOWER = "lower", "Lower scores are better"

    class Protocol(models.TextChoices):
        PAIRWISE = "pairwise", "Pairwise: A, B or tie"
        SCORES = "scores", "Scores: 1–10 each"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="judges")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.LLM)
    better = models.CharField(max_length=8, choices=Better.choices, default=Better.HIGHER)
    path = models.CharField(max_length=500, blank=True, help_text="Reward model: its folder on the worker machine.")
    base_url = models.CharField(
        max_length=500, blank=True, help_text="LLM endpoint: e.g. http://127.0.0.1:8000/v1 (…/chat/completions is added)."
    )
    model_name = models.CharField(max_length=200, blank=True, help_text="LLM endpoint: the model name the server expects.")
    api_key = models.CharField(max_length=500, blank=True, help_text="LLM endpoint: sent as a Bearer token; never shown again.")
    api_key_origin = models.CharField(
        max_length=300, blank=True, editable=False,
        help_text="The scheme://host:port the API key was entered for; it is sent to no other address.",
    )
    criterion = models.TextField(blank=True, help_text="LLM endpoint: what “better” means, in words.")
    protocol = models.CharField(max_length=8, choices=Protocol.choices, default=Protocol.PAIRWISE,
                                help_text="LLM endpoint: how two answers are compared. Small judge models often hold only the 1–10 format.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team_id", "name", "pk"]
        constraints = [models.UniqueConstraint(Lower("name"), "team", name="judge_unique_name_per_team")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_builtin(self) -> bool:
        return self.team_id is None

    @property
    def summary(self) -> str:
        """What it measures, in a few words (never the key)."""
        if self.kind == self.Kind.LLM:
            where = f"{self.model_name} at {self.base_url}" + (", by scores" if self.protocol == self.Protocol.SCORES else "")
        elif self.kind == self.Kind.REWARD_MODEL:
            where = self.path
        elif self.kind == self.Kind.SELF:
            where = "the run's own model, asked in both orders"
        else:
            where = self.get_kind_display()
        return f"{where}; {self.get_better_display().lower()}"

    def engine_config(self) -> dict:
        """Keyword arguments for icon2engine.judges.JudgeConfig (small JSON, for the worker)."""
        config = {"kind": self.kind, "better": self.better}
        if self.kind == self.Kind.REWARD_MODEL:
            config["path"] = self.path
        if self.kind == self.Kind.LLM:
            config.update(base_url=self.base_url, model=self.model_name, criterion=self.criterion,
                          api_key=self.api_key or None, api_key_origin=self.api_key_origin or None, api_key_env=None,
                          protocol=self.protocol)
        if self.kind == self.Kind.SELF:
            config["criterion"] = self.criterion
        return config

    def clean(self) -> None:
        for name in ("name", "path", "base_url", "model_name", "api_key", "criterion"):
            text_check(getattr(self, name), field=name, label=self._meta.get_field(name).verbose_name,
                       max_length=RATIONALE_MAX if name == "criterion" else 10**6)
        self.path, self.base_url, self.model_name = self.path.strip(), self.base_url.strip(), self.model_name.strip()
        self.criterion = self.criterion.strip()
        errors: dict[str, str] = {}
        if self.kind == self.Kind.REWARD_MODEL and not self.path:
            errors["path"] = "Give the reward model's folder on the worker machine."
        if self.kind == self.Kind.LLM:
            problem = url_problem(self.base_url)
            if problem:
                errors["base_url"] = problem
            if not self.model_name:
                errors["model_name"] = "Give the model name the server expects."
        if self.kind in (self.Kind.LLM, self.Kind.SELF) and not self.criterion:
            errors["criterion"] = "Say in words what makes one answer better than another."
        if errors:
            raise ValidationError(errors)

    @property
    def base_url_origin(self) -> str:
        """The scheme://host:port of a valid base URL ("" for any other)."""
        return url_origin(self.base_url) if self.base_url and not url_problem(self.base_url) else ""


class Run(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class InstructionSource(models.TextChoices):
        SYNTHESIZE = "synthesize", "Synthesise with the model (Magpie-style)"
        UPLOAD = "upload", "Upload a list"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    model = models.ForeignKey(ModelSpec, on_delete=models.PROTECT, related_name="runs")
    dimensions = models.ManyToManyField(Dimension, related_name="runs")
    name = models.CharField(max_length=120)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True)

    # Instructions
    instruction_source = models.CharField(
        max_length=16, choices=InstructionSource.choices, default=InstructionSource.SYNTHESIZE
    )
    n_instructions = models.PositiveIntegerField(
        default=64,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_INSTRUCTIONS)],
        help_text="How many raw instructions to synthesise (the paper: 1,000,000). For uploads, set from the file.",
    )
    instructions_file = models.FileField(upload_to="uploads/", blank=True, max_length=300)
    keep_fraction = models.FloatField(
        default=0.1,
        validators=bound_validators(BOUNDS["keep_fraction"]),
        help_text=f"Fraction of instructions kept by the consistency filter ({BOUNDS['keep_fraction'].text()}). "
        "The paper keeps 0.10.",
    )
    keep_fraction_used = models.FloatField(
        null=True, blank=True,
        help_text="The fraction the filter keeps now, when a threshold moved by hand changed it (blank: keep_fraction).",
    )

    # Steering
    layer_start = models.PositiveIntegerField(
        null=True, blank=True, help_text="First steered layer (0-based). Blank = the middle third of the model's layers."
    )
    layer_end = models.PositiveIntegerField(
        null=True, blank=True, help_text="Last steered layer, inclusive. Blank = the middle third."
    )
    calibrate = models.BooleanField(
        default=False, help_text="Sweep γ⁺ and γ⁻ on ~100 instructions with a judge instead of using the values below."
    )
    calibration_judge = models.ForeignKey(
        Judge, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="Scores the sweep's responses. Blank = the site's default (ICON2_CALIBRATION_JUDGE).",
    )
    eval_judge = models.ForeignKey(
        Judge, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="Compares the trained model with the base. Blank = the site's default (ICON2_EVAL_JUDGE).",
    )
    gamma_plus = models.FloatField(
        default=0.08,
        validators=bound_validators(BOUNDS["gamma_plus"]),
        help_text="Steering strength for chosen responses, as a fraction of each layer's mean hidden-state norm "
        f"({BOUNDS['gamma_plus'].text('γ⁺')}). The paper's 0.1 is absolute for 7–8B models; ours is relative.",
    )
    gamma_minus = models.FloatField(
        default=-0.03,
        validators=bound_validators(BOUNDS["gamma_minus"]),
        help_text=f"Steering strength for rejected responses, relative to the layer norm ({BOUNDS['gamma_minus'].text('γ⁻')}). "
        "The default −0.03 is smaller than γ⁺ because the negative side loses fluency first: on the embedded "
        "model, −0.05 turned most rejected answers into loops (bench/pair_quality.py).",
    )
    gamma_plus_used = models.FloatField(
        null=True, blank=True, help_text="The γ⁺ the pairs were generated with when calibration chose it (blank: gamma_plus).",
    )
    gamma_minus_used = models.FloatField(
        null=True, blank=True, help_text="The γ⁻ the pairs were generated with when calibration chose it (blank: gamma_minus).",
    )
    steering_mode = models.CharField(
        max_length=16,
        choices=[("add", "Add the vector (the paper's rule)"), ("add_renorm", "Add, then restore each token's norm"),
                 ("clamp", "Clamp the projection to γ")],
        default="add",
        help_text="How the direction is applied at each steered layer. bench/pair_quality.py compares them.",
    )
    pairing = models.CharField(
        max_length=24,
        choices=[("two_sided", "Both sides steered: chosen at γ⁺, rejected at γ⁻ (the paper)"),
                 ("unsteered_chosen", "The unsteered answer is chosen; only the rejected side is steered"),
                 ("unsteered_rejected", "Only the chosen side is steered; the unsteered answer is rejected")],
        default="two_sided",
        help_text="Which sides are steered. A one-sided pair keeps one side the model's own answer, so that side "
        "cannot drift off the question; bench/pair_relevance.py compares them. Recorded with every pair.",
    )

    # Generation
    max_new_tokens = models.PositiveIntegerField(
        default=96, validators=bound_validators(BOUNDS["max_new_tokens"]),
        help_text=f"Length cap per response, in tokens ({BOUNDS['max_new_tokens'].text('n')}).",
    )
    do_sample = models.BooleanField(default=False, help_text="Sample instead of greedy decoding.")
    no_repeat_ngram_size = models.PositiveSmallIntegerField(
        default=3,
        validators=bound_validators(BOUNDS["no_repeat_ngram_size"]),
        help_text="Decoding safeguard on both sides: never repeat a token n-gram (0 = off). 3 stops the loops a "
        "steered small model falls into; recorded with every pair.",
    )
    quality_gate = models.BooleanField(
        default=True,
        help_text="Measure every response against the unsteered answer; regenerate a degenerate side (a loop, "
        "gibberish, another language, a stub) at a smaller |γ|, and drop the pair if it still fails.",
    )
    repetition_penalty = models.FloatField(
        default=1.0,
        validators=bound_validators(BOUNDS["repetition_penalty"]),
        help_text="Decoding safeguard on both sides: > 1 discourages any repeated token (1 = off). Strong "
        "penalties make steered text incoherent.",
    )
    temperature = models.FloatField(
        default=0.7,
        validators=bound_validators(BOUNDS["temperature"]),
        help_text=f"Sampling temperature ({BOUNDS['temperature'].text('t')}); used only when sampling.",
    )
    top_p = models.FloatField(
        default=0.95,
        validators=bound_validators(BOUNDS["top_p"]),
        help_text=f"Nucleus sampling mass ({BOUNDS['top_p'].text('p')}); used only when sampling.",
    )
    seed = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(2**32 - 1)], help_text="Random seed.")

    # Review
    require_review = models.BooleanField(
        default=True, help_text="Annotators must audit the steered pairs before training starts."
    )
    review_k = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(10)], help_text="Reviews per pair (1–10)."
    )

    # DPO
    dpo_beta = models.FloatField(
        default=0.1,
        validators=bound_validators(BOUNDS["beta"]),
        help_text=f"DPO β, the strength of the pull towards the reference model ({BOUNDS['beta'].text('β')}; paper: 0.1).",
    )
    dpo_learning_rate = models.FloatField(
        default=2e-4,
        validators=bound_validators(BOUNDS["learning_rate"]),  # training refuses more
        help_text="2e-4 suits LoRA on a CPU (a new run's defaults beat the base model: bench/default_run.py); "
        "the paper used 5e-7 with a full fine-tune.",
    )
    dpo_epochs = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Passes over the pairs (paper: 1 pass over 100,000). A small run needs a few passes over its pairs.",
    )
    dpo_batch_size = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(1024)], help_text="Pairs per optimiser step."
    )
    dpo_use_lora = models.BooleanField(default=True, help_text="Train LoRA adapters (PEFT) instead of every weight.")
    dpo_lora_r = models.PositiveSmallIntegerField(
        default=8, validators=[MinValueValidator(1), MaxValueValidator(256)], help_text="LoRA rank."
    )
    dpo_max_length = models.PositiveIntegerField(
        default=256, validators=bound_validators(BOUNDS["max_length"]),
        help_text=f"Token cap per prompt + response ({BOUNDS['max_length'].text('n')})."
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(Lower("name"), "project", name="run_unique_name_per_project")]

    def __str__(self) -> str:
        return self.name

    @property
    def team_id(self) -> int:
        return self.project.team_id

    # What the user asked for stays in gamma_plus / gamma_minus / keep_fraction; what calibration or a
    # threshold moved by hand computed is kept beside it, and the worker uses these.
    @property
    def gamma_plus_effective(self) -> float:
        return self.gamma_plus if self.gamma_plus_used is None else self.gamma_plus_used

    @property
    def gamma_minus_effective(self) -> float:
        return self.gamma_minus if self.gamma_minus_used is None else self.gamma_minus_used

    @property
    def keep_fraction_effective(self) -> float:
        return self.keep_fraction if self.keep_fraction_used is None else self.keep_fraction_used

    @property
    def calibration_judge_label(self) -> str:
        return str(self.calibration_judge) if self.calibration_judge_id else f"site default ({settings.ICON2_CALIBRATION_JUDGE})"

    @property
    def eval_judge_label(self) -> str:
        return str(self.eval_judge) if self.eval_judge_id else f"site default ({settings.ICON2_EVAL_JUDGE})"

    def layer_band(self, n_layers: int) -> tuple[int, int] | None:
        """The steered blocks (first, last), inclusive: the run's setting, or the middle third
        of ``n_layers``: the engine's own rule (icon2engine.formats.default_layers)."""
        if not n_layers:
            return None
        if self.layer_start is not None and self.layer_end is not None:
            return self.layer_start, min(self.layer_end, n_layers - 1)
        band = default_layers(n_layers)
        return band[0], band[-1]

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if (self.layer_start is None) != (self.layer_end is None):
            field = "layer_end" if self.layer_end is None else "layer_start"
            errors[field] = "Give both the first and the last layer, or leave both blank."
        elif self.layer_start is not None and self.layer_end is not None:
            if self.layer_start > self.layer_end:
                errors["layer_end"] = "The last layer must not come before the first."
            elif self.model_id and self.model.num_layers and self.layer_end >= self.model.num_layers:
                errors["layer_end"] = f"{self.model} has {self.model.num_layers} layers (0–{self.model.num_layers - 1})."
        if errors:
            raise ValidationError(errors)


class Stage(models.Model):
    class Kind(models.TextChoices):
        EXTRACT = "extract", "Extract directions"
        SYNTHESIZE = "synthesize", "Synthesise instructions"
        FILTER = "filter", "Filter by consistency"
        CALIBRATE = "calibrate", "Calibrate γ"
        GENERATE = "generate", "Generate steered pairs"
        REVIEW = "review", "Human review"
        TRAIN = "train", "Train (DPO)"
        EVALUATE = "evaluate", "Evaluate"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        SKIPPED = "skipped", "Skipped"

    ORDER = [
        Kind.EXTRACT,
        Kind.SYNTHESIZE,
        Kind.FILTER,
        Kind.CALIBRATE,
        Kind.GENERATE,
        Kind.REVIEW,
        Kind.TRAIN,
        Kind.EVALUATE,
    ]

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="stages")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    order = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=300, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    compute = models.JSONField(default=dict, blank=True, help_text="wall_s, tokens_in, tokens_out, device")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["run", "order"]
        constraints = [models.UniqueConstraint(fields=["run", "kind"], name="stage_unique_kind_per_run")]

    def __str__(self) -> str:
        return f"{self.run} · {self.get_kind_display()}"

    @property
    def percent(self) -> int | None:
        if not self.progress_total:
            return None
        return min(100, round(100 * self.progress_done / self.progress_total))
