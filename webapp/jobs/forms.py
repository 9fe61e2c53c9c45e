"""Forms of the run page's tools: the playground and the filter threshold."""
from __future__ import annotations

import math

from django import forms

from webapp.jobs.models import Probe
from webapp.studio.models import Run

MAX_PROBE_TOKENS = 256


class ProbeForm(forms.ModelForm):
    """An instruction, a dimension of the run, a layer band and γ (a fraction of each layer's norm)."""

    class Meta:
        model = Probe
        fields = ["instruction", "dimension", "layer_start", "layer_end", "gamma", "max_new_tokens"]
        widgets = {"instruction": forms.Textarea(attrs={"rows": 3, "placeholder": "e.g. Describe your last holiday."})}
        labels = {"gamma": "γ (strength)", "layer_start": "First layer", "layer_end": "Last layer", "max_new_tokens": "Max new tokens"}
        help_texts = {
            "gamma": "Steering strength as a fraction of each layer's mean hidden-state norm (0 < γ ≤ 1); "
                     "the responses use +γ and −γ.",
            "layer_start": "First steered layer (0-based); blank = the run's band.",
            "layer_end": "Last steered layer, inclusive.",
            "max_new_tokens": f"Length of each response (1–{MAX_PROBE_TOKENS}).",
        }

    def __init__(self, *args, run: Run, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.run = run
        self.fields["dimension"].queryset = run.dimensions.order_by("pk")
        self.fields["dimension"].empty_label = None
        self.fields["instruction"].error_messages["required"] = "Write an instruction to try, e.g. “Describe your last holiday.”"
        self.fields["gamma"].error_messages.update(
            required="Give γ, e.g. 0.2.", invalid="γ must be above 0 and at most 1 (a fraction of the layer norm; try 0.1–0.3)."
        )
        self.fields["gamma"].widget.attrs.update(step="0.01", min="0.01", max="1")
        self.fields["max_new_tokens"].widget.attrs.update(min="1", max=str(MAX_PROBE_TOKENS))
        if not self.is_bound:
            self.initial.setdefault("gamma", max(run.gamma_plus_effective, abs(run.gamma_minus_effective), 0.1) if not run.calibrate else 0.1)
            self.initial.setdefault("max_new_tokens", min(run.max_new_tokens, 48))
            self.initial.setdefault("layer_start", run.layer_start)
            self.initial.setdefault("layer_end", run.layer_end)

    def clean_instruction(self) -> str:
        text = (self.cleaned_data.get("instruction") or "").strip()
        if not text:
            raise forms.ValidationError("Write an instruction to try, e.g. “Describe your last holiday.”")
        if len(text) > 4000:
            raise forms.ValidationError(f"Keep the instruction under 4,000 characters (this one has {len(text):,}).")
        return text

    def clean_gamma(self) -> float:
        gamma = self.cleaned_data.get("gamma")
        if gamma is None or not math.isfinite(gamma) or not 0 < gamma <= 1:
            raise forms.ValidationError("γ must be above 0 and at most 1 (a fraction of the layer norm; try 0.1–0.3).")
        return gamma

    def clean_max_new_tokens(self) -> int:
        n = self.cleaned_data.get("max_new_tokens")
        if n is None or not 1 <= n <= MAX_PROBE_TOKENS:
            raise forms.ValidationError(f"Choose between 1 and {MAX_PROBE_TOKENS} tokens.")
        return n

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("layer_start"), data.get("layer_end")
        if start is None and end is None:
            start, end = self.run.layer_start, self.run.layer_end
        if (start is None) != (end is None):
            self.add_error("layer_end" if end is None else "layer_start", "Give both the first and the last layer, or leave both blank.")
        elif start is not None:
            n = self.run.model.num_layers
            if start > end:
                self.add_error("layer_end", "The last layer must not come before the first.")
            elif n and end >= n:
                self.add_error("layer_end", f"{self.run.model} has {n} layers (0–{n - 1}).")
        data["layer_start"], data["layer_end"] = start, end
        return data
