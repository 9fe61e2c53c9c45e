"""Run one bias audit: claim it, load the run's directions and pairs, measure with icon2engine.audit.

The reference directions are extracted once per model and kept under the team's folder
(MEDIA_ROOT/teams/<team>/references/), so only the first audit of a model pays for them.
"""
from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from icon2engine import Icon2Error

log = logging.getLogger(__name__)

JUDGE_MEASURES = {"lexicon": "sentiment", "vader": "sentiment", "length": "length", "formality": "formality"}


def _references(run, lm, progress, keys=None) -> dict:
    from icon2engine.audit import reference_directions

    cache = Path(settings.MEDIA_ROOT) / "teams" / str(run.project.team_id) / "references"
    progress("Extracting the reference directions (once per model)…")
    return reference_directions(lm, cache_dir=cache, keys=keys)


def remedy_apply(audit, lm, *, progress=lambda message: None) -> bool:
    """Project the remedy's references out of its dimension's direction, save it beside the original
    and hand it to the services, which make the stages after the filter run again. True when the
    audit now waits for those stages; False when there were no pairs to regenerate."""
    from icon2engine.audit import orthogonalise
    from webapp.jobs import audits
    from worker.stages import direction_files_save, run_directions

    run, remedy = audit.run, audit.remedy
    key = str(remedy["dimension"])
    direction = run_directions(run).get(key)
    if direction is None:
        raise Icon2Error("the dimension has no direction in this run any more")
    refs = _references(run, lm, progress)
    against = sorted({*direction.extra.get("orthogonalised_against", []), *remedy["against"]}, key=list(refs).index)
    progress(f"Projecting {', '.join(against)} out of the direction…")
    cleaned = orthogonalise(direction, refs, against)
    path, gguf = direction_files_save(run, lm, cleaned, f"dimension-{key}-without-{'-'.join(against)}-audit-{audit.pk}")
    return audits.audit_remedy_apply(audit=audit, path=str(path), gguf_path=str(gguf))


def _judge_kind(run) -> str:
    row = run.eval_judge
    return row.engine_config()["kind"] if row is not None else settings.ICON2_EVAL_JUDGE


def audit_result(run, lm, *, progress=lambda message: None) -> dict:
    """The audit of every dimension of ``run`` as small JSON (the worker's whole computation)."""
    from icon2engine.audit import audit_verdict, direction_overlap, pair_gaps, reference_bank
    from webapp.studio.models import Dimension
    from worker.stages import run_directions, run_judge, run_layers

    directions = run_directions(run)  # keyed by dimension id
    if not directions:
        raise Icon2Error("the run has no directions to audit; wait for the extract stage")
    refs = _references(run, lm, progress)
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
    from worker.runner import run_claimed

    run_claimed("audit", audit_id, claim=lambda pk, worker: audits.audit_claim(audit_id=pk, worker=worker),
                heartbeat=lambda audit: audits.audit_heartbeat(audit=audit),
                fail=lambda audit, error: audits.audit_fail(audit=audit, error=error), body=_audit_do)


def _audit_do(audit) -> None:
    from webapp.jobs import audits
    from worker.model_cache import get_model

    lm = get_model(audit.run.model)
    progress = lambda m: audits.audit_progress(audit=audit, message=m)  # noqa: E731
    if audit.remedy and not audit.remedy.get("applied"):
        if remedy_apply(audit, lm, progress=progress):
            return  # waiting for the stages after the filter; the generate stage queues it again
        audit.refresh_from_db()
    audits.audit_finish(audit=audit, result=audit_result(audit.run, lm, progress=progress))
