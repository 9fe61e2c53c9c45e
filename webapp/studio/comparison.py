"""Runs side by side: the settings and results of two or more runs of a project in one table,
each row marked when the runs differ, so a team can decide which run's pairs to train on.

Values are the strings the page shows ("—" when a run has none yet), and a row differs when
those strings do: two thresholds that round to the same figure are not a difference worth
a mark.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any, NamedTuple

from django.db.models import Prefetch
from django.http import Http404

from webapp.ids import id_parse
from webapp.review.selectors import review_summary
from webapp.studio.models import Project, Run, Stage

MISSING = "—"
MIN_RUNS = 2


class ComparisonRow(NamedTuple):
    section: str
    label: str
    values: list[str]
    differs: bool


@dataclass(frozen=True)
class Comparison:
    columns: list[Run]
    rows: list[ComparisonRow]

    @property
    def sections(self) -> list[tuple[str, list[ComparisonRow]]]:
        """The rows grouped by section, in order (one table body each)."""
        groups: dict[str, list[ComparisonRow]] = {}
        for row in self.rows:
            groups.setdefault(row.section, []).append(row)
        return list(groups.items())

    @property
    def differing(self) -> int:
        return sum(row.differs for row in self.rows)


def run_list_for_comparison(*, project: Project, ids: Iterable[str | int]) -> list[Run]:
    """The project's runs with these ids, oldest first, with what `run_comparison` reads.

    Raises Http404 when an id is not a run of this project: a run of another project or team
    is not found, whether or not it exists. Blank ids are ignored and repeats count once."""
    wanted: set[int] = set()
    for raw in ids:
        if str(raw).strip() == "":
            continue
        pk = id_parse(raw)
        if pk is None:
            raise Http404("No such run.")
        wanted.add(pk)
    runs = list(
        project.runs.filter(pk__in=wanted)
        .select_related("model")
        .prefetch_related("dimensions", "directions", Prefetch("stages", queryset=Stage.objects.order_by("order")))
        .order_by("created_at", "pk")
    )
    if len(runs) != len(wanted):
        raise Http404("No such run.")
    return runs


def run_comparison(*, runs: Sequence[Run], review: bool = True) -> Comparison:
    """Settings and results of `runs`, one column each, one row per figure.

    Args:
        runs: the runs to compare, in column order (see `run_list_for_comparison`).
        review: include the review figures (agreement, agreement with steering); annotators,
            who review blind, should not see them (as on the review lead page).
    Returns:
        A Comparison whose rows are (section, label, values, differs).

    Example:
        >>> table = run_comparison(runs=run_list_for_comparison(project=project, ids=[3, 5]))
        >>> [row.label for row in table.rows if row.differs]
        ['Keep fraction', 'Seed', 'Kept']
    """
    columns = list(runs)
    cells = [_settings(run) + _results(run, review=review) for run in columns]
    rows = []
    for i, (section, label, _) in enumerate(cells[0] if cells else []):
        values = [run_cells[i][2] for run_cells in cells]
        rows.append(ComparisonRow(section, label, values, len(set(values)) > 1))
    return Comparison(columns=columns, rows=rows)


# Settings ----------------------------------------------------------------------------------------

SETTINGS = "Settings"


def _settings(run: Run) -> list[tuple[str, str, str]]:
    source = "uploaded list" if run.instruction_source == Run.InstructionSource.UPLOAD else "synthesised"
    layers = f"{run.layer_start}–{run.layer_end}" if run.layer_start is not None else "middle third"
    gamma = f"{_g(run.gamma_plus)} / {_g(run.gamma_minus)}" + (" (calibrated)" if run.calibrate else "")
    decoding = f"sampling, T={_g(run.temperature)}, top-p={_g(run.top_p)}" if run.do_sample else "greedy"
    guards = [f"no-repeat {run.no_repeat_ngram_size}-grams"] if run.no_repeat_ngram_size else []
    guards += [f"repetition penalty {_g(run.repetition_penalty)}"] if run.repetition_penalty != 1.0 else []
    decoding += "".join(f", {g}" for g in guards)
    review = f"required, {run.review_k} per pair" if run.require_review else "not required"
    adapters = f"LoRA r={run.dpo_lora_r}" if run.dpo_use_lora else "full fine-tune"
    epochs = f"{run.dpo_epochs} epoch{'' if run.dpo_epochs == 1 else 's'}"
    dpo = f"β={_g(run.dpo_beta)}, lr={_g(run.dpo_learning_rate)}, {epochs}, batch {run.dpo_batch_size}, {adapters}"
    return [
        (SETTINGS, "Model", run.model.name),
        (SETTINGS, "Dimensions", ", ".join(d.name for d in run.dimensions.all()) or MISSING),
        (SETTINGS, "Instructions", f"{source}, {run.n_instructions:,}"),
        (SETTINGS, "Keep fraction", _g(run.keep_fraction)),
        (SETTINGS, "Layers", layers),
        (SETTINGS, "γ⁺ / γ⁻", gamma),
        (SETTINGS, "Steering rule", run.get_steering_mode_display()),
        (SETTINGS, "Steered sides", run.get_pairing_display()),
        (SETTINGS, "Max new tokens", str(run.max_new_tokens)),
        (SETTINGS, "Decoding", decoding),
        (SETTINGS, "Seed", str(run.seed)),
        (SETTINGS, "Review", review),
        (SETTINGS, "DPO", dpo),
    ]


# Results -----------------------------------------------------------------------------------------


def _results(run: Run, *, review: bool) -> list[tuple[str, str, str]]:
    stages = {stage.kind: stage for stage in run.stages.all()}
    return [*_data(run, stages), *(_review(run, stages) if review else []), *_outcome(stages), *_cost(stages)]


def _finished(stages: dict[str, Stage], kind: str) -> dict[str, Any]:
    """A stage's metrics once it has succeeded; a retried stage keeps stale metrics until then."""
    stage = stages.get(kind)
    return stage.metrics if stage is not None and stage.status == Stage.Status.SUCCEEDED else {}


def _data(run: Run, stages: dict[str, Stage]) -> list[tuple[str, str, str]]:
    section = "Data"
    filtered = _finished(stages, Stage.Kind.FILTER)
    threshold = filtered.get("threshold")
    separation, best = direction_separation(run=run)
    return [
        (section, "Status", run.get_status_display()),
        (section, "Instructions scored", _count(filtered.get("scored"))),
        (section, "Kept", _count(filtered.get("kept"))),
        (section, "Consistency threshold", f"{threshold:.4g}" if _is_number(threshold) else MISSING),
        (section, "Pairs", _count(run.pairs.count())),
        (section, "Separation (steered layers)", _percent(separation)),
        (section, "Best layer", f"layer {best[0]} ({_percent(best[1])})" if best else MISSING),
    ]


def direction_separation(*, run: Run) -> tuple[float | None, tuple[int, float] | None]:
    """Held-out separation accuracy of the run's directions: its mean over the steered layer
    band, and the best layer with its accuracy. With several dimensions, each layer's figure is
    the mean over the dimensions. (None, None) before the directions are extracted.

    The band is layer_start..layer_end inclusive, or when blank the middle third of the model's
    layers (n//3 up to 2n//3, n = the layers in the diagnostics), as the engine steers them."""
    by_layer: dict[int, list[float]] = defaultdict(list)
    n_layers = 0
    for artifact in run.directions.all():
        diagnostics = artifact.diagnostics if isinstance(artifact.diagnostics, list) else []
        n_layers = max(n_layers, len(diagnostics))
        for row in diagnostics:
            accuracy = row.get("separation_accuracy") if isinstance(row, dict) else None
            if _is_number(accuracy) and _is_number(row.get("layer")):
                by_layer[int(row["layer"])].append(float(accuracy))
    if not by_layer:
        return None, None
    accuracy = {layer: fmean(values) for layer, values in by_layer.items()}
    first, last = run.layer_band(n_layers) or (0, -1)
    band = range(first, last + 1)
    in_band = [accuracy[layer] for layer in band if layer in accuracy]
    best = max(sorted(accuracy), key=lambda layer: accuracy[layer])  # ties: the lowest layer
    return (fmean(in_band) if in_band else None), (best, accuracy[best])


def _review(run: Run, stages: dict[str, Stage]) -> list[tuple[str, str, str]]:
    section = "Review"
    summary = review_summary(run=run)
    reviewed = sum(1 for review in summary["reviews"] if review.orders)
    agreement, steering = summary["agreement"], summary["steering"]
    if agreement["percent"] is None:
        between = MISSING
    else:
        kappa = f", κ {agreement['kappa']:.2f}" if agreement["kappa"] is not None else ""
        between = f"{agreement['percent']:.0f}%{kappa} ({agreement['n']} shared)"
    gate = _finished(stages, Stage.Kind.REVIEW)
    passed = f"{gate['kept']} of {gate['total']}" if "kept" in gate and "total" in gate else MISSING
    return [
        (section, "Pairs reviewed", str(reviewed) if reviewed else MISSING),
        (section, "Annotator agreement", between),
        (section, "Agree with steering", f"{steering['percent']:.0f}%" if steering["percent"] is not None else MISSING),
        (section, "Passed review", passed),
    ]


def _outcome(stages: dict[str, Stage]) -> list[tuple[str, str, str]]:
    section = "Training and evaluation"
    final = _finished(stages, Stage.Kind.TRAIN).get("final") or {}
    evaluation = _finished(stages, Stage.Kind.EVALUATE).get("evaluation") or {}
    win_rate = MISSING
    if all(_is_number(evaluation.get(key)) for key in ("win_rate", "ci_low", "ci_high")):
        interval = f"{_percent(evaluation['ci_low'], sign=False)}–{_percent(evaluation['ci_high'])}"
        win_rate = f"{_percent(evaluation['win_rate'])} ({interval})"
        if _is_number(evaluation.get("n")):
            win_rate += f", n={_count(evaluation['n'])}"
    record = MISSING
    if all(_is_number(evaluation.get(key)) for key in ("wins", "ties", "losses")):
        record = " / ".join(_count(evaluation[key]) for key in ("wins", "ties", "losses"))
    loss, accuracy = final.get("loss"), final.get("accuracy")
    return [
        (section, "Final DPO loss", f"{loss:.4f}" if _is_number(loss) else MISSING),
        (section, "Reward accuracy", f"{accuracy:.2f}" if _is_number(accuracy) else MISSING),
        (section, "Win rate vs base", win_rate),
        (section, "Wins / ties / losses", record),
    ]


def _cost(stages: dict[str, Stage]) -> list[tuple[str, str, str]]:
    section = "Cost"
    computes = [stage.compute for stage in stages.values() if isinstance(stage.compute, dict)]
    walls = [c["wall_s"] for c in computes if _is_number(c.get("wall_s"))]
    tokens = [c["tokens_out"] for c in computes if _is_number(c.get("tokens_out"))]
    generate = stages.get(Stage.Kind.GENERATE)
    estimate = generate.compute.get("sample_and_rank") if generate is not None and isinstance(generate.compute, dict) else None
    estimate_wall = estimate.get("wall_s") if isinstance(estimate, dict) else None
    return [
        (section, "Compute time", _duration(sum(walls)) if walls else MISSING),
        (section, "Tokens out", _count(sum(tokens)) if tokens else MISSING),
        (section, "Sample-and-rank estimate", _duration(estimate_wall) if _is_number(estimate_wall) else MISSING),
    ]


# Formatting --------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _g(value: float) -> str:
    return f"{value:g}"


def _count(value: Any) -> str:
    return f"{int(value):,}" if _is_number(value) else MISSING


def _percent(value: float | None, *, sign: bool = True) -> str:
    if value is None:
        return MISSING
    return f"{round(100 * value)}{'%' if sign else ''}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
