"""What a run's stages recorded, shaped for the run page's evidence panels (selectors, read only).

Directions (per-layer diagnostics and cosines between dimensions), the consistency histogram
with a movable threshold, calibration curves, training curves and evaluation, and the
compute bill with the sample-and-rank estimate. Everything here reads rows and stage
metrics the worker stored; nothing calls a model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from webapp.jobs import charts
from webapp.jobs.models import DirectionArtifact, Instruction
from webapp.studio.models import Run, Stage


def _stage(run: Run, kind: str) -> Stage | None:
    return next((s for s in run.stages.all() if s.kind == kind), None)


# Directions ----------------------------------------------------------------------------------------


@dataclass
class DimensionDiagnostics:
    name: str
    rows: list[dict]
    band: tuple[int, int] | None
    band_separation: float | None
    best_layer: dict | None
    quality_chart: str
    norm_chart: str


@dataclass
class DirectionPanel:
    dimensions: list[DimensionDiagnostics] = field(default_factory=list)
    cosine_labels: list[str] = field(default_factory=list)
    cosine_matrix: list[list[float]] = field(default_factory=list)
    cosine_chart: str = ""
    cosine_note: str = ""


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def direction_panel(*, run: Run) -> DirectionPanel:
    panel = DirectionPanel()
    artifacts = list(DirectionArtifact.objects.filter(run=run).select_related("dimension").order_by("dimension_id"))
    for a in artifacts:
        rows = list(a.diagnostics or [])
        band = run.layer_band(len(rows))
        in_band = [r for r in rows if band and band[0] <= r["layer"] <= band[1]]
        best = max((r for r in rows if r.get("separation_accuracy") is not None), key=lambda r: r["separation_accuracy"], default=None)
        for r in rows:
            r["in_band"] = bool(band and band[0] <= r["layer"] <= band[1])
        quality = charts.line_chart(
            [
                charts.Series("separation (held out)", [(r["layer"], r.get("separation_accuracy")) for r in rows], style=0),
                charts.Series("explained var. (PC1)", [(r["layer"], r.get("explained_variance")) for r in rows], style=1),
                charts.Series("cos with mean diff.", [(r["layer"], r.get("mean_diff_cosine")) for r in rows], style=2, dashed=True),
            ],
            title=f"{a.dimension.name}: how well each layer separates the two prompts",
            x_label="layer", y_label="fraction", y_range=(0, 1.05), integer_x=True, x_band=band, band_label="steered",
            rules=[charts.Rule(0.5, "chance")],
        )
        norms = charts.line_chart(
            [charts.Series("mean hidden-state norm", [(r["layer"], r.get("mean_norm")) for r in rows], style=3)],
            title=f"{a.dimension.name}: hidden-state norm per layer (γ is a fraction of this)",
            x_label="layer", y_label="‖h‖", integer_x=True, x_band=band, band_label="steered", height=180,
        )
        panel.dimensions.append(DimensionDiagnostics(
            name=a.dimension.name, rows=rows, band=band,
            band_separation=_mean([r.get("separation_accuracy") for r in in_band]), best_layer=best,
            quality_chart=quality, norm_chart=norms,
        ))
    extract = _stage(run, Stage.Kind.EXTRACT)
    cos = (extract.metrics.get("cosines") if extract else None) or {}
    if len(artifacts) > 1 and cos.get("layers"):
        names = {str(a.dimension_id): a.dimension.name for a in artifacts}
        labels = [names.get(str(d), f"dimension {d}") for d in cos["dimensions"]]
        band = run.layer_band(len(cos["layers"]))
        layers = [m for i, m in enumerate(cos["layers"]) if band and band[0] <= i <= band[1]] or cos["layers"]
        n = len(labels)
        panel.cosine_labels = labels
        panel.cosine_matrix = [[round(sum(m[i][j] for m in layers) / len(layers), 3) for j in range(n)] for i in range(n)]
        panel.cosine_chart = charts.heatmap(labels, panel.cosine_matrix, title="Cosine between dimensions")
        off = [abs(panel.cosine_matrix[i][j]) for i in range(n) for j in range(n) if i < j]
        worst = max(off) if off else 0.0
        panel.cosine_note = (
            "The directions are distinct (|cos| below 0.5 everywhere)." if worst < 0.5
            else f"Some directions overlap (|cos| up to {worst:.2f}): those dimensions steer much the same thing."
        )
    elif len(artifacts) > 1:
        panel.cosine_note = "This run's extraction did not record cosines between dimensions (re-run extraction to see them)."
    return panel


# Consistency histogram -------------------------------------------------------------------------------


@dataclass
class FilterPanel:
    scored: int
    kept: int
    threshold: float | None
    chart: str
    bins: list
    preview_threshold: float | None
    preview_kept: int | None
    above: list[Instruction]
    below: list[Instruction]
    lo: float | None
    hi: float | None
    step: float | None
    method: str


def filter_panel(*, run: Run, threshold: float | None = None, sample: int = 3) -> FilterPanel:
    """The histogram of consistency scores with the current (or a proposed) keep threshold,
    how many a proposed threshold would keep and the instructions on either side of it.

    Runs the slider's preview on every move, so it reads the scores as plain floats and fetches
    only the few instructions it shows."""
    import numpy as np

    from webapp.jobs.selectors import filter_scores_sorted

    scored = run.instructions.filter(consistency__isnull=False)
    stage = _stage(run, Stage.Kind.FILTER)
    ascending = filter_scores_sorted(stage=stage) if stage else np.zeros(0)
    kept = stage.metrics.get("kept") if stage and stage.status == Stage.Status.SUCCEEDED else None
    if kept is None:
        kept = scored.filter(kept=True).count()
    current = (stage.metrics.get("threshold") if stage else None)
    if current is None and 0 < kept <= ascending.size:
        current = float(ascending[ascending.size - kept])
    shown = threshold if threshold is not None else current
    hist = charts.histogram(ascending, title="Consistency of every scored instruction", x_label="consistency score (centred)", threshold=shown)
    above: list[Instruction] = []
    below: list[Instruction] = []
    preview_kept = None
    scores = ascending
    if shown is not None and scores.size:
        preview_kept = int(scores.size - np.searchsorted(scores, shown, side="left"))
        nearby = scored.select_related("winner")
        above = list(nearby.filter(consistency__gte=shown).order_by("consistency", "-index")[:sample])  # the lowest kept, nearest first
        below = list(nearby.filter(consistency__lt=shown).order_by("-consistency", "index")[:sample])
    # Slider bounds rounded outward, so the browser never finds the lowest score below "min".
    lo, hi = (math.floor(scores[0] * 1e4) / 1e4, math.ceil(scores[-1] * 1e4) / 1e4) if scores.size else (None, None)
    step = round((hi - lo) / 200, 6) or 0.0001 if scores.size else None
    return FilterPanel(
        scored=int(scores.size), kept=kept, threshold=current, chart=hist.svg, bins=hist.bins,
        preview_threshold=shown, preview_kept=preview_kept, above=above, below=below,
        lo=lo, hi=hi, step=step, method=(stage.metrics.get("method", "centred") if stage else "centred"),
    )


# Calibration -----------------------------------------------------------------------------------------


@dataclass
class CalibrationPanel:
    summary: dict
    by_gamma: list[dict]
    p_rows: list[dict]
    score_chart: str
    p_chart: str
    coherence_chart: str


def calibration_panel(*, run: Run) -> CalibrationPanel | None:
    stage = _stage(run, Stage.Kind.CALIBRATE)
    cal = stage.metrics.get("calibration") if stage else None
    if not cal or not cal.get("table"):
        return None
    table, base, pick = cal["table"], cal.get("baseline", {}), cal.get("pick")
    # One point per γ: the chosen side's figures for γ⁺, the rejected side's for γ⁻, the baseline at 0.
    points: dict[float, dict] = {0.0: {"gamma": 0.0, "score": base.get("mean_score"), "loglik": base.get("loglik"),
                                       "distinct2": base.get("distinct2"), "side": "unsteered"}}
    for r in table:
        points.setdefault(r["gamma_plus"], {"gamma": r["gamma_plus"], "score": r["mean_score_chosen"], "loglik": r["loglik_chosen"],
                                            "distinct2": r["distinct2_chosen"], "side": "chosen (γ⁺)"})
        points.setdefault(r["gamma_minus"], {"gamma": r["gamma_minus"], "score": r["mean_score_rejected"], "loglik": r["loglik_rejected"],
                                             "distinct2": r["distinct2_rejected"], "side": "rejected (γ⁻)"})
    by_gamma = [points[g] for g in sorted(points)]
    marks = []
    if pick:
        marks = [charts.Mark(pick["gamma_plus"], f"γ⁺ {pick['gamma_plus']}"), charts.Mark(pick["gamma_minus"], f"γ⁻ {pick['gamma_minus']}")]
    score_chart = charts.line_chart(
        [charts.Series("mean judge score", [(p["gamma"], p["score"]) for p in by_gamma], style=0)],
        title=f"Mean judge score against γ ({cal.get('judge', 'judge')})", x_label="γ (fraction of the layer norm)",
        y_label="score", marks=marks,
    )
    floor = base.get("loglik_floor")
    coherence_chart = charts.line_chart(
        [charts.Series("log-likelihood per token", [(p["gamma"], p["loglik"]) for p in by_gamma], style=2)],
        title="Coherence against γ: the model's own log-likelihood of the response", x_label="γ", y_label="nats / token",
        marks=marks, rules=[charts.Rule(floor, "coherence floor")] if floor is not None else [], height=200,
    )
    # P(chosen > rejected) against γ⁻, one line per γ⁺.
    plus_values = sorted({r["gamma_plus"] for r in table})
    series = [
        charts.Series(f"γ⁺ = {gp}", [(r["gamma_minus"], r["p_chosen_gt_rejected"]) for r in sorted(table, key=lambda r: r["gamma_minus"]) if r["gamma_plus"] == gp],
                      style=i % 5, dashed=bool(pick and gp != pick["gamma_plus"]))
        for i, gp in enumerate(plus_values)
    ]
    p_chart = charts.line_chart(
        series, title="P(chosen > rejected) against γ⁻", x_label="γ⁻", y_label="P(chosen > rejected)", y_range=(0, 1.05),
        marks=[charts.Mark(pick["gamma_minus"], "picked")] if pick else [], rules=[charts.Rule(0.9, "threshold 0.9")],
    )
    return CalibrationPanel(summary=cal, by_gamma=by_gamma, p_rows=table, score_chart=score_chart, p_chart=p_chart,
                            coherence_chart=coherence_chart)


# Training and evaluation -------------------------------------------------------------------------------


@dataclass
class TrainingPanel:
    stage: Stage | None
    curve: list[dict]
    final: dict
    evaluation: dict | None
    loss_chart: str
    reward_chart: str
    live: bool
    warnings: list[dict]
    gaps: dict | None


def training_panel(*, run: Run) -> TrainingPanel:
    train, evaluate = _stage(run, Stage.Kind.TRAIN), _stage(run, Stage.Kind.EVALUATE)
    curve = list((train.metrics.get("curve") if train else None) or [])
    for i, e in enumerate(curve):
        e.setdefault("step", i + 1)
    loss_chart = charts.line_chart(
        [charts.Series("DPO loss", [(e["step"], e.get("loss")) for e in curve], style=0)],
        title="DPO loss", x_label="step", y_label="loss", integer_x=True, rules=[charts.Rule(math.log(2), "ln 2 (start)")], height=200,
    )
    reward_chart = charts.line_chart(
        [
            charts.Series("reward margin", [(e["step"], e.get("margins")) for e in curve], style=1),
            charts.Series("reward accuracy", [(e["step"], e.get("accuracy")) for e in curve], style=2, dashed=True),
        ],
        title="Reward margin and accuracy", x_label="step", y_label="value", integer_x=True, height=200,
    )
    evaluation = evaluate.metrics.get("evaluation") if evaluate and evaluate.status == Stage.Status.SUCCEEDED else None
    return TrainingPanel(
        stage=train, curve=curve, final=(train.metrics.get("final") if train else None) or {}, evaluation=evaluation,
        loss_chart=loss_chart, reward_chart=reward_chart,
        live=bool(train and train.status in (Stage.Status.QUEUED, Stage.Status.RUNNING)),
        warnings=list((train.metrics.get("warnings") if train else None) or []),
        gaps=(train.metrics.get("gaps") if train else None) or None,
    )


# Cost ----------------------------------------------------------------------------------------------------

ICON2_ROUTE = (Stage.Kind.EXTRACT, Stage.Kind.FILTER, Stage.Kind.CALIBRATE, Stage.Kind.GENERATE)


@dataclass
class CostPanel:
    stages: list[Stage]
    total_s: float
    tokens_in: int
    tokens_out: int
    route_s: float
    estimate: dict | None
    ratio: float | None
    generate_ratio: float | None
    chart: str
    rows: list[dict]


def cost_panel(*, run: Run) -> CostPanel:
    stages = [s for s in run.stages.all() if s.compute]
    total = sum(float(s.compute.get("wall_s", 0)) for s in stages)
    route = sum(float(s.compute.get("wall_s", 0)) for s in stages if s.kind in ICON2_ROUTE)
    generate = _stage(run, Stage.Kind.GENERATE)
    estimate = (generate.compute.get("sample_and_rank") if generate else None) or None
    ratio = route / estimate["wall_s"] if estimate and estimate.get("wall_s") else None
    generate_s = float(generate.compute.get("wall_s", 0)) if generate else 0.0
    generate_ratio = generate_s / estimate["wall_s"] if estimate and estimate.get("wall_s") else None
    rows = [{"label": s.get_kind_display(), "wall_s": float(s.compute.get("wall_s", 0)), "kind": s.kind} for s in stages]
    if estimate:
        rows.append({"label": "Sample-and-rank (estimate)", "wall_s": float(estimate.get("wall_s", 0)), "kind": "estimate"})
    chart = charts.bar_chart([(r["label"], r["wall_s"], r["kind"] == "estimate") for r in rows], unit="s")
    return CostPanel(
        stages=stages, total_s=total, tokens_in=sum(int(s.compute.get("tokens_in", 0)) for s in stages),
        tokens_out=sum(int(s.compute.get("tokens_out", 0)) for s in stages), route_s=route, estimate=estimate,
        ratio=ratio, generate_ratio=generate_ratio, chart=chart, rows=rows,
    )


@dataclass
class AuditPanel:
    latest: object | None  # the newest RunAudit, whatever its state
    done: object | None  # the newest finished one (shown while a new one runs)
    dimensions: list[dict] = field(default_factory=list)
    running: bool = False
    waiting: bool = False  # a remedy waits for its regenerated pairs (polled slowly)
    before: object | None = None  # the audit ``done`` is compared with (a remedy's)


def _audit_measures(d: dict, names: dict) -> dict[str, float | None]:
    """One dimension's audit as label → figure, for the before / after table."""
    rows: dict[str, float | None] = {f"Cosine with {names.get(k, k)}": v for k, v in d["overlap"]["cosines"].items()}
    rows["Share explained by the references"] = d["overlap"]["explained"]
    gaps = d.get("pairs") or {}
    for k, v in (gaps.get("gaps") or {}).items():
        rows[f"{k.capitalize()} gap, chosen − rejected"] = v["mean"]
    if gaps.get("judge"):
        rows["Judge prefers chosen"] = gaps["judge"]["prefers_chosen"]
    for k, v in (gaps.get("prediction") or {}).items():
        rows[f"{'All gaps' if k == 'all' else k.capitalize()} predict the judge"] = v
    return rows


def audit_panel(*, run: Run) -> AuditPanel:
    """The Audit tab: per dimension, a chart of |cosine| with each reference (flagged bars in the
    second colour), the numbers, and the pairs' side gaps."""
    from webapp.jobs.audits import OPEN, audit_latest, audit_latest_done

    from webapp.jobs.models import RunAudit

    latest, done = audit_latest(run=run), audit_latest_done(run=run)
    before = done.before if done is not None and done.before_id and done.before.status == RunAudit.Status.SUCCEEDED else None
    earlier = {d["id"]: d for d in (before.result.get("dimensions", []) if before else [])}
    names = {r["key"]: r["name"] for r in (done.result.get("references", []) if done else [])}
    dims = []
    for d in (done.result.get("dimensions", []) if done else []):
        cos, flagged = d["overlap"]["cosines"], set(d["overlap"]["flagged"])  # the engine flagged them: the web never imports it
        chart = charts.bar_chart([(names.get(k, k), abs(v), k in flagged) for k, v in cos.items()],
                                 title=f"{d['name']}: overlap with each reference", top=1.0, digits=2)
        refs = [{"key": k, "name": names.get(k, k), "cosine": v, "flagged": k in flagged} for k, v in cos.items()]
        gaps = d.get("pairs") or {}
        pred = gaps.get("prediction") or {}
        gap_rows = [{"feature": k, "mean": v["mean"], "chosen_higher": v["chosen_higher"], "predicts": pred.get(k)}
                    for k, v in (gaps.get("gaps") or {}).items()]
        compare = None
        if d["id"] in earlier:  # the remedy: the same measures on the original direction and its pairs
            then, now = _audit_measures(earlier[d["id"]], names), _audit_measures(d, names)
            compare = {"verdict": earlier[d["id"]]["verdict"],
                       "rows": [{"label": k, "before": then.get(k), "after": now.get(k)} for k in {**then, **now}]}
        dims.append({**d, "chart": chart, "refs": refs, "gap_rows": gap_rows, "predict_all": pred.get("all"),
                     "layers": d["overlap"]["layers"], "compare": compare,
                     "against_names": [names.get(k, k) for k in d.get("orthogonalised_against", [])]})
    return AuditPanel(latest=latest, done=done, dimensions=dims, running=bool(latest and latest.status in OPEN),
                      waiting=bool(latest and latest.status == RunAudit.Status.WAITING), before=before)
