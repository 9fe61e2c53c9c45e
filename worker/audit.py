"""Run one bias audit: claim it, load the run's directions and pairs, measure with icon2engine.audit.

The reference directions are extracted once per model and kept under the team's folder
(MEDIA_ROOT/teams/<team>/references/), so only the first audit of a model pays for them.
"""
from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections

from icon2engine import Icon2Error

log = logging.getLogger(__name__)

JUDGE_MEASURES = {"lexicon": "sentiment", "vader": "sentiment", "length": "length", "formality": "formality"}


def _judge_kind(run) -> str:
    row = run.eval_judge
    return row.engine_config()["kind"] if row is not None else settings.ICON2_EVAL_JUDGE


def audit_result(run, lm, *, progress=lambda message: None) -> dict:
    """The audit of every dimension of ``run`` as small JSON (the worker's whole computation)."""
    from icon2engine.audit import audit_verdict, direction_overlap, pair_gaps, reference_bank, reference_directions
    from webapp.studio.models import Dimension
    from worker.stages import run_directions, run_judge, run_layers

    directions = run_directions(run)  # keyed by dimension id
    if not directions:
        raise Icon2Error("the run has no directions to audit; wait for the extract stage")
    cache = Path(settings.MEDIA_ROOT) / "teams" / str(run.project.team_id) / "references"
    progress("Extracting the reference directions (once per model)…")
    refs = reference_directions(lm, cache_dir=cache)
    names = {r.key: r.name for r in reference_bank()}
    layers = run_layers(run, lm.n_layers)
    dims = {str(d.pk): d.name for d in Dimension.objects.filter(pk__in=[int(k) for k in directions])}
    judge, measure = None, JUDGE_MEASURES.get(_judge_kind(run))
    out = []
    for key, ds in directions.items():
        progress(f"Auditing {dims.get(key, key)}…")
        overlap = direction_overlap(ds, refs, layers)
        pairs = list(run.pairs.filter(dimension_id=int(key)).order_by("instruction__rank")
                     .values("instruction__text", "chosen", "rejected", "judge_verdict")[: settings.ICON2_AUDIT_MAX_PAIRS])
        gaps = None
        if pairs:
            rows = [{"instruction": p["instruction__text"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
            verdicts = [p["judge_verdict"] for p in pairs]
            if any(v is None for v in verdicts):  # an unreviewed run stored no verdicts: ask the judge now
                judge = judge or run_judge(run, "evaluation", lm=lm)
                verdicts = None
            gaps = pair_gaps(rows, judge=judge, preferences=verdicts, judge_measure=measure, seed=run.seed)
        name = dims.get(key, key)
        out.append({"id": int(key), "name": name, "overlap": overlap, "pairs": gaps,
                    "verdict": audit_verdict(name, overlap, gaps, names),
                    "orthogonalised_against": ds.extra.get("orthogonalised_against", [])})
    return {"dimensions": out, "references": [{"key": r.key, "name": r.name, "about": r.about} for r in reference_bank()],
            "flagged": sorted({k for d in out for k in d["overlap"]["flagged"]}),
            "pair_flags": sorted({f["feature"] for d in out if d["pairs"] for f in d["pairs"]["flags"] if not f["expected"]})}


def run_audit(audit_id: int) -> None:
    from webapp.jobs import audits
    from worker.model_cache import get_model
    from worker.runner import WORKER_NAME

    close_old_connections()
    audit = audits.audit_claim(audit_id=audit_id, worker=WORKER_NAME)
    if audit is None:
        log.info("audit %s is not ours (taken or finished)", audit_id)
        return
    try:
        lm = get_model(audit.run.model)
        result = audit_result(audit.run, lm, progress=lambda m: audits.audit_progress(audit=audit, message=m))
        audits.audit_finish(audit=audit, result=result)
    except Icon2Error as exc:
        audits.audit_fail(audit=audit, error=str(exc))
    except Exception as exc:
        log.exception("audit %s failed", audit_id)
        audits.audit_fail(audit=audit, error=f"{type(exc).__name__}: {exc}")
    finally:
        close_old_connections()
