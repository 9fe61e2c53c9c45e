"""A finished run written the way the worker writes one (rows, stage metrics and compute), for
page tests that need no model. tests/integration and tests/browser make real ones."""
from __future__ import annotations

from django.utils import timezone

from webapp.jobs.models import DirectionArtifact, Instruction, Pair
from webapp.studio.models import Dimension, Run, Stage

N_LAYERS = 30


def diagnostics(peak: float = 0.95) -> list[dict]:
    return [
        {"layer": i, "explained_variance": round(0.2 + 0.01 * i, 4), "separation_accuracy": round(min(peak, 0.5 + 0.03 * i), 4),
         "mean_norm": round(5.0 + 2.0 * i, 3), "mean_diff_cosine": 0.8}
        for i in range(N_LAYERS)
    ]


def calibration() -> dict:
    table = []
    for gp, sc in ((0.05, 0.30), (0.1, 0.42)):
        for gm, sr, p in ((-0.05, 0.10, 0.80), (-0.1, 0.02, 0.93)):
            table.append({"gamma_plus": gp, "gamma_minus": gm, "mean_score_chosen": sc, "mean_score_rejected": sr,
                          "p_chosen_gt_rejected": p, "loglik_chosen": -2.1, "loglik_rejected": -2.4,
                          "distinct2_chosen": 0.9, "distinct2_rejected": 0.85, "excluded_reason": None})
    return {"pick": {"gamma_plus": 0.1, "gamma_minus": -0.1, "p_chosen_gt_rejected": 0.93, "mean_score_chosen": 0.42},
            "reason": "γ⁺=0.1 has the highest mean judge score", "judge": "vader", "layers": list(range(10, 20)),
            "n_instructions": 8, "table": table,
            "baseline": {"mean_score": 0.2, "loglik": -1.9, "distinct2": 0.92, "loglik_floor": -3.4}}


def finish_run(run: Run, *, n: int = 20, keep: int = 5, second_dimension: Dimension | None = None) -> Run:
    """Scores for ``n`` instructions (i-th scores 0.1·i − 1), the top ``keep`` kept with pairs,
    every stage succeeded with metrics and compute."""
    dims = [d for d in [*run.dimensions.all(), second_dimension] if d is not None]
    if second_dimension is not None:
        run.dimensions.add(second_dimension)
    for d in dims:
        DirectionArtifact.objects.create(run=run, dimension=d, path="/nonexistent.safetensors", diagnostics=diagnostics())
    rows = [Instruction(run=run, index=i, text=f"Instruction number {i}", source="synthesized",
                        scores={str(dims[0].pk): 0.1 * i}, consistency=round(0.1 * i - 1, 6), winner=dims[0])
            for i in range(n)]
    Instruction.objects.bulk_create(rows)
    kept = list(run.instructions.order_by("-consistency"))[:keep]
    for rank, r in enumerate(kept):
        r.kept, r.rank = True, rank
    Instruction.objects.bulk_update(kept, ["kept", "rank"])
    for r in kept:
        Pair.objects.create(run=run, instruction=r, dimension=dims[0], chosen=f"Gladly! {r.text}", rejected="No.",
                            gamma_plus=0.1, gamma_minus=-0.1, layers=list(range(10, 20)), chosen_tokens=8, rejected_tokens=2)
    compute = {"wall_s": 2.0, "tokens_in": 100, "tokens_out": 50, "device": "cpu", "chunks": 1, "workers": ["w1"]}
    metrics = {
        "extract": {"cosines": {"dimensions": [d.pk for d in dims], "layers": [[[1.0 if a == b else 0.12 for b in dims] for a in dims]] * N_LAYERS}} if len(dims) > 1 else {},
        "filter": {"kept": keep, "scored": n, "method": "centred", "threshold": kept[-1].consistency},
        "calibrate": {"calibration": calibration()},
        "train": {"steps": 3, "pairs": keep, "output_dir": "/tmp/none", "final": {"loss": 0.6, "margins": 0.3, "accuracy": 0.75},
                  "curve": [{"step": s, "loss": 0.69 - 0.03 * s, "margins": 0.1 * s, "accuracy": 0.5 + 0.1 * s,
                             "rewards_chosen": 0.05 * s, "rewards_rejected": -0.05 * s} for s in (1, 2, 3)]},
        "evaluate": {"evaluation": {"n": 16, "wins": 11, "ties": 2, "losses": 3, "win_rate": 0.75, "ci_low": 0.5, "ci_high": 0.9,
                                    "judge": "vader", "mean_score": {"base": 0.3, "trained": 0.6}, "projection": {"base": 1.0, "trained": 2.0}}},
    }
    now = timezone.now()
    for stage in run.stages.all():
        c = dict(compute)
        if stage.kind == Stage.Kind.GENERATE:
            c["sample_and_rank"] = {"samples": 5, "n_instructions": keep, "generate_s": 5.0, "judge_s": 1.0, "wall_s": 6.0,
                                    "tokens_out": 125, "basis": "generation priced from this run's own generation"}
        Stage.objects.filter(pk=stage.pk).update(status=Stage.Status.SUCCEEDED, metrics=metrics.get(stage.kind, {}),
                                                 compute=c, finished_at=now)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED, calibrate=True)
    run.refresh_from_db()
    return run
