from __future__ import annotations

from django import template

from webapp.jobs.selectors import pair_list_for_run

register = template.Library()


@register.inclusion_tag("jobs/_pairs_preview.html")
def run_pairs_preview(run, limit: int = 8) -> dict:
    pairs = pair_list_for_run(run=run)
    generate = next((s for s in run.stages.all() if s.kind == "generate"), None)
    gate = (generate.compute or {}).get("gate") if generate else None
    dropped = sorted(((gate or {}).get("dropped") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "pairs": list(pairs[:limit]), "pair_count": pairs.count(), "gate": gate, "gate_dropped": dropped,
        "gate_dropped_total": sum(n for _, n in dropped),
    }


@register.inclusion_tag("jobs/_outcome.html")
def run_outcome(run) -> dict:
    """Training's last figures and the evaluation's win rate, when those stages have run."""
    stages = {s.kind: s for s in run.stages.all()}
    train, evaluate = stages.get("train"), stages.get("evaluate")
    return {
        "train": train.metrics.get("final") if train and train.status == "succeeded" else None,
        "train_stage": train,
        "evaluation": evaluate.metrics.get("evaluation") if evaluate and evaluate.status == "succeeded" else None,
    }
