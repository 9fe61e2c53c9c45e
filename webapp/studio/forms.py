from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from django import forms
from django.conf import settings
from django.http import QueryDict

from webapp.limits import DESCRIPTION_MAX, DIMENSION_NAME_MAX, FEATURE_INSTRUCTIONS_MAX, NAME_MAX, RATIONALE_MAX
from webapp.studio.instructions import ALLOWED_EXTENSIONS
from webapp.studio.models import Dimension, Judge, ModelSpec, Project, Run
from webapp.studio.selectors import judge_list_for_team, model_list_for_team, run_name_suggest
from webapp.studio.services import RUN_CONFIG_FIELDS, instructions_file_check, pairs_validate


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=NAME_MAX, help_text="Unique within the team, e.g. “Support assistant tone”.")
    description = forms.CharField(
        max_length=DESCRIPTION_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="What this project is trying to improve.",
    )


class DimensionForm(forms.Form):
    name = forms.CharField(max_length=DIMENSION_NAME_MAX, help_text="Unique within the project, e.g. “Helpfulness”.")
    description = forms.CharField(
        max_length=DESCRIPTION_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="What “better” means on this dimension.",
    )
    feature_instructions = forms.CharField(
        max_length=FEATURE_INSTRUCTIONS_MAX,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "Explain photosynthesis to a child.\nWrite a haiku about rain."}),
        required=False,
        help_text="Optional: one instruction per line used to extract the direction. "
        "Leave empty to use the instructions the run synthesises.",
    )
    judge = forms.ModelChoiceField(
        queryset=Judge.objects.none(), required=False, empty_label="None (the site default)",
        help_text="How this dimension is measured: its runs calibrate and evaluate with this judge unless they pick "
        "another. Add LLM endpoints and reward models under Judges.",
    )
    refusal_allowed = forms.BooleanField(
        required=False, label="The chosen side may refuse", help_text=Dimension._meta.get_field("refusal_allowed").help_text,
    )


def _row_key(key: str = "") -> str:
    """A stable id for a prompt-pair row in the page, so inline errors find their row."""
    return key if re.fullmatch(r"[a-z0-9]{1,16}", key) else secrets.token_hex(4)


@dataclass
class PairRow:
    positive: str = ""
    negative: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    key: str = field(default_factory=_row_key)

    @property
    def is_blank(self) -> bool:
        return not self.positive.strip() and not self.negative.strip()


class DimensionEditor:
    """The dimension form plus its prompt-pair rows, posted as parallel `positive`/`negative` lists."""

    def __init__(self, data: QueryDict | None = None, *, project: Project, dimension: Dimension | None = None) -> None:
        self.project, self.dimension = project, dimension
        self.pairs_error = ""
        if data is not None:
            self.form = DimensionForm(data)
            positives, negatives = data.getlist("positive"), data.getlist("negative")
            # Unequal lists (three positives, one negative) become rows with a side missing, which
            # then fail with "Write the … prompt": nothing is dropped without a word.
            count = max(len(positives), len(negatives))
            positives += [""] * (count - len(positives))
            negatives += [""] * (count - len(negatives))
            keys = data.getlist("row")[:count]
            keys += [""] * (count - len(keys))
            self.rows = []
            for positive, negative, key in zip(positives, negatives, keys, strict=True):
                key = _row_key(key)
                while key in {row.key for row in self.rows}:
                    key = _row_key()
                self.rows.append(PairRow(positive, negative, key=key))
        elif dimension is not None:
            self.form = DimensionForm(
                initial={
                    "name": dimension.name,
                    "description": dimension.description,
                    "feature_instructions": dimension.feature_instructions,
                    "judge": dimension.judge_id,
                    "refusal_allowed": dimension.refusal_allowed,
                }
            )
            self.rows = [PairRow(pair.positive, pair.negative, key=f"p{pair.pk}") for pair in dimension.pairs.all()]
        else:
            self.form = DimensionForm()
            self.rows = [PairRow()]
        self.form.fields["judge"].queryset = judge_list_for_team(team=project.team)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(row.positive, row.negative) for row in self.rows]

    def is_valid(self) -> bool:
        form_ok = self.form.is_valid()
        for row, errors in zip(self.rows, pairs_validate(self.pairs), strict=True):
            row.errors = errors
        if not self.rows:
            self.pairs_error = "Add at least one pair of system prompts."
        name_ok = self._name_is_free()
        return form_ok and name_ok and not self.pairs_error and not any(row.errors for row in self.rows)

    def _name_is_free(self) -> bool:
        # The service enforces this too; checking here puts the message next to the name, inline.
        name = " ".join(str(self.form.data.get("name", "")).split())
        if not name or "name" in self.form.errors:
            return True
        clash = self.project.dimensions.filter(name__iexact=name)
        if self.dimension is not None:
            clash = clash.exclude(pk=self.dimension.pk)
        if clash.exists():
            self.form.add_error("name", f"This project already has a dimension called “{name}”.")
            return False
        return True

    @property
    def service_kwargs(self) -> dict:
        fields = self.form.cleaned_data
        return {
            "name": fields["name"],
            "description": fields["description"],
            "feature_instructions": fields["feature_instructions"],
            "judge": fields.get("judge"),
            "refusal_allowed": fields["refusal_allowed"],
            "pairs": self.pairs,
        }

    def keep_only_touched_errors(self) -> None:
        """For inline validation while typing: drop “required” errors on fields not filled in yet."""
        for name in list(self.form.errors):
            if not str(self.form.data.get(name, "")).strip():
                del self.form.errors[name]
        for row in self.rows:
            if row.is_blank:
                row.errors = {}
        self.pairs_error = ""


class JudgeForm(forms.ModelForm):
    class Meta:
        model = Judge
        fields = ["name", "kind", "better", "criterion", "base_url", "model_name", "api_key", "protocol", "path"]
        labels = {"better": "Direction", "base_url": "Base URL", "model_name": "Model name", "api_key": "API key",
                  "path": "Reward model folder"}
        widgets = {
            "api_key": forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            "criterion": forms.Textarea(attrs={"rows": 3, "placeholder": "Which answer is more helpful, honest and harmless?"}),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["criterion"].max_length = RATIONALE_MAX
        self.fields["protocol"].required = False  # only an LLM endpoint uses it
        if self.instance.pk and self.instance.api_key:
            self.fields["api_key"].help_text = (
                f"A key is stored for {self.instance.api_key_origin or 'this base URL'}. Leave blank to keep it; type a new "
                "one to replace it. A base URL on another host or port needs the key typed again (else it is cleared)."
            )

    def clean_protocol(self) -> str:
        return self.cleaned_data.get("protocol") or Judge.Protocol.PAIRWISE

    def _post_clean(self) -> None:
        # Validation that needs the team happens in the service (judge_create / judge_update).
        pass


class ModelSpecForm(forms.ModelForm):
    class Meta:
        model = ModelSpec
        fields = ["name", "kind", "path_or_id", "revision", "layers_attr", "num_layers"]
        labels = {"path_or_id": "Path or hub id", "layers_attr": "Decoder layers attribute"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [c for c in ModelSpec.Kind.choices if c[0] != ModelSpec.Kind.EMBEDDED]

    def _post_clean(self) -> None:
        # Validation that needs the team happens in the service (model_create / model_update).
        pass


def calibrate_default(model: ModelSpec | None) -> bool:
    """A new run calibrates γ on any model but the embedded one, on which the defaults were measured."""
    return model is not None and model.kind != ModelSpec.Kind.EMBEDDED


DEFAULT_KEEP_FRACTION = 0.5  # with the model's other defaults: a run that beats the base (bench/default_run.py)


class RunForm(forms.ModelForm):
    SECTIONS: list[tuple[str, str, list[str]]] = [
        ("Basics", "What to align and on which model.", ["name", "model", "dimensions"]),
        (
            "Instructions",
            "Where the prompts come from and how many survive the consistency filter.",
            ["instruction_source", "n_instructions", "instructions_file", "keep_fraction"],
        ),
        (
            "Steering",
            "Where and how hard the direction is added while generating chosen (γ⁺) and rejected (γ⁻) responses. "
            "The defaults (γ⁺ 0.08, γ⁻ −0.03, add, middle third) were measured on the embedded model by "
            "bench/pair_quality.py: fluent on both sides and separated by the judge. γ⁻ is smaller because the "
            "rejected side loses fluency first. So calibration is on by default for any other model (a sweep on a small "
            "sample) and off for the embedded one.",
            ["layer_start", "layer_end", "calibrate", "gamma_plus", "gamma_minus", "steering_mode", "pairing"],
        ),
        ("Generation", "Decoding for the steered responses. The quality gate measures every response against the "
         "unsteered answer and regenerates or drops degenerate ones; the no-repeat safeguard applies to both sides "
         "alike, so it cannot become the difference DPO learns.", ["max_new_tokens", "quality_gate", "no_repeat_ngram_size", "repetition_penalty", "do_sample", "temperature", "top_p", "seed"]),
        ("Judges", "Which judge scores the calibration sweep and which compares the trained model with the base. "
         "Add an LLM endpoint or a reward model under Judges; blank uses the site's default (VADER unless the "
         "operator set another).", ["calibration_judge", "eval_judge"]),
        ("Review", "Whether people audit the pairs before training.", ["require_review", "review_k"]),
        (
            "Training (DPO)",
            "Direct preference optimisation on the accepted pairs.",
            ["dpo_beta", "dpo_learning_rate", "dpo_epochs", "dpo_batch_size", "dpo_use_lora", "dpo_lora_r", "dpo_max_length"],
        ),
    ]

    name = forms.CharField(max_length=NAME_MAX, required=False, help_text="Leave blank for the next “Run N”.")

    class Meta:
        model = Run
        fields = ["name", "model", "dimensions", *RUN_CONFIG_FIELDS, "instructions_file"]
        widgets = {
            "dimensions": forms.CheckboxSelectMultiple,
            "instruction_source": forms.RadioSelect,
            "instructions_file": forms.ClearableFileInput(attrs={"accept": ",".join(ALLOWED_EXTENSIONS)}),
        }
        labels = {
            "n_instructions": "Instructions to synthesise",
            "keep_fraction": "Keep fraction",
            "layer_start": "First layer",
            "layer_end": "Last layer",
            "calibrate": "Calibrate γ automatically",
            "calibration_judge": "Calibration judge",
            "eval_judge": "Evaluation judge",
            "gamma_plus": "γ⁺ (chosen)",
            "gamma_minus": "γ⁻ (rejected)",
            "steering_mode": "Steering rule",
            "pairing": "Steered sides",
            "quality_gate": "Quality gate",
            "no_repeat_ngram_size": "No-repeat n-gram size",
            "repetition_penalty": "Repetition penalty",
            "do_sample": "Sample (instead of greedy)",
            "top_p": "Top-p",
            "require_review": "Require human review before training",
            "review_k": "Reviews per pair",
            "dpo_beta": "β",
            "dpo_learning_rate": "Learning rate",
            "dpo_epochs": "Epochs",
            "dpo_batch_size": "Batch size",
            "dpo_use_lora": "Use LoRA",
            "dpo_lora_r": "LoRA rank",
            "dpo_max_length": "Max length (tokens)",
        }
        help_texts = {
            "model": "The embedded SmolLM2 runs anywhere; add others under Models.",
            "dimensions": "One or more. Each instruction is steered along the dimension it is most consistent with.",
            "instruction_source": "Synthesise prompts from the model itself, or upload your own list.",
            "instructions_file": "Only for uploads: .jsonl (strings or {\"instruction\": …}), .csv with an "
            "“instruction” column, or .txt with one instruction per line.",
            "keep_fraction": "Fraction kept by the consistency filter (0 < x ≤ 1). 0.5 suits small runs: half the "
            "pool becomes pairs, the other half is held out to evaluate the trained model. The paper keeps 0.10 of a "
            "much larger pool.",
        }

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        models = model_list_for_team(team=project.team)
        self.fields["model"].queryset = models
        self.fields["model"].empty_label = None
        # The page's script turns calibration on when another model is chosen (until the box is touched).
        embedded = models.filter(kind=ModelSpec.Kind.EMBEDDED).values_list("pk", flat=True)
        self.fields["model"].widget.attrs["data-embedded-models"] = " ".join(str(pk) for pk in embedded)
        self.fields["calibrate"].help_text = (
            "Sweep γ⁺ and γ⁻ with the calibration judge instead of using the values below. On by default for any "
            "model other than the embedded one: the default γ were measured on SmolLM2 and need not suit yours. "
            f"The sweep takes {settings.ICON2_CALIBRATION_SAMPLE_CPU} kept instructions on a CPU worker (a few "
            f"minutes on a small model), {settings.ICON2_CALIBRATION_SAMPLE} on a GPU."
        )
        self.fields["dimensions"].queryset = project.dimensions.order_by("name")
        for name in ("calibration_judge", "eval_judge"):
            self.fields[name].queryset = judge_list_for_team(team=project.team)
            self.fields[name].empty_label = "The dimension's judge (else the site default)"
        self.fields["instructions_file"].required = False
        self.fields["pairing"].required = False  # a form or client that predates it gets the model's default
        if not self.is_bound:
            self.initial.setdefault("keep_fraction", DEFAULT_KEEP_FRACTION)
            self.initial.setdefault("name", run_name_suggest(project=project))
            builtin = models.filter(team__isnull=True).first()
            if builtin is not None:
                self.initial.setdefault("model", builtin.pk)
            chosen = self.initial.get("model")
            if not isinstance(chosen, ModelSpec):
                chosen = models.filter(pk=chosen).first() if str(chosen or "").isdigit() else None
            self.initial.setdefault("calibrate", calibrate_default(chosen))

    def clean_pairing(self):
        return self.cleaned_data.get("pairing") or Run._meta.get_field("pairing").default

    def clean_instructions_file(self):
        upload = self.cleaned_data.get("instructions_file")
        if upload and self.data.get("instruction_source") == Run.InstructionSource.UPLOAD:
            try:
                instructions_file_check(upload)
            except forms.ValidationError as error:
                raise forms.ValidationError(error.message_dict["instructions_file"]) from None
        return upload

    def sections(self):
        for title, intro, names in self.SECTIONS:
            yield title, intro, [self[name] for name in names]
