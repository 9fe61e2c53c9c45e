"""A new user's first run, end to end: the run form's defaults, through the code the worker runs.

Creates a fresh SQLite studio in a temporary folder, a project with the *Optimism* preset, and a
run with every setting at the run form's default (review off: a benchmark has no annotators).
Then it executes the run's chunks in this process with ``worker.runner.run_chunk`` (what the
Celery task calls) until the run ends: extract → synthesise → filter → generate (with the
quality gate) → train (DPO, LoRA) → evaluate (trained against base on held-out instructions).

Last line: win_rate=… ci_low=… relevance_win=… refusal_trained=… refusal_base=… degenerate_rejected=…
reward_acc_step_of_first_098=… (targets: ci_low > 0.5 on the concept; relevance_win ≥ 0.45, the trained
model against the base on relevance to the instruction, ties half; refusal_trained ≤ refusal_base;
the step is 0 when reward accuracy never reached 0.98). The first three pairs are printed in full,
exactly as generated, for reading.

    python bench/default_run.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="keep the studio (database, artifacts) in this folder")
    args = ap.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="icon2-default-run-"))
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="webapp.settings", DATABASE_URL=f"sqlite:///{tmp / 'studio.sqlite3'}",
        ICON2_MEDIA_ROOT=str(tmp / "media"), ICON2_QUEUE="none", ICON2_PROGRESS_INTERVAL_MS="2000",
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from webapp.accounts.services import team_create
    from webapp.jobs.models import Chunk
    from webapp.studio.forms import RunForm
    from webapp.studio.models import Run
    from webapp.studio.services import (
        RUN_CONFIG_FIELDS, dimension_create_from_preset, model_embedded_ensure, project_create, run_create, run_launch,
    )
    from worker.runner import run_chunk

    user = get_user_model().objects.create_user(username="bench", password="pw-bench-123456")
    team = team_create(name="Bench", owner=user)
    project = project_create(team=team, name="Default run", created_by=user)
    dim = dimension_create_from_preset(project=project, key="optimism", created_by=user)
    model = model_embedded_ensure()
    form = RunForm(project=project)
    config = {name: form[name].initial for name in RUN_CONFIG_FIELDS}
    config.update(require_review=False, name="defaults")
    print("run form defaults:", json.dumps({k: v for k, v in config.items() if k != "name"}, default=str))
    run = run_create(project=project, created_by=user, model=model, dimensions=[dim], config=config)
    run_launch(run=run, actor=user)
    t0 = time.perf_counter()
    stage_t = {}
    while True:
        run.refresh_from_db()
        if run.status not in (Run.Status.QUEUED, Run.Status.RUNNING):
            break
        queued = list(Chunk.objects.filter(stage__run=run, status=Chunk.Status.QUEUED).order_by("stage__order", "index"))
        if not queued:
            time.sleep(0.2)
            continue
        for chunk in queued:
            s = time.perf_counter()
            run_chunk(chunk.pk)
            stage_t[chunk.stage.kind] = stage_t.get(chunk.stage.kind, 0.0) + time.perf_counter() - s
    wall = time.perf_counter() - t0
    print(f"run {run.status} in {wall:.0f} s; per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in stage_t.items()))
    stages = {s.kind: s for s in run.stages.all()}
    for s in stages.values():
        if s.error:
            print(f"  {s.kind}: {s.error}")
    gen = stages["generate"]
    gate = gen.compute.get("gate", {})
    print(f"generate: {gen.message}")
    pairs = list(run.pairs.order_by("pk"))
    # every first-pass failure of a rejected side: degenerate, off-topic or refusing
    first_pass_bad = sum(any(r["side"] == "rejected" for r in p.retries) for p in pairs) + sum(
        n for reason, n in gate.get("dropped", {}).items() if reason.startswith("rejected"))
    generated = len(pairs) + sum(gate.get("dropped", {}).values())
    degenerate_rejected = first_pass_bad / generated if generated else float("nan")
    print("the first three pairs, exactly as generated:")
    for p in pairs[:3]:
        q = p.quality or {}
        print(f"  prompt:   {p.instruction.text!r}\n  chosen:   {p.chosen!r}\n  rejected: {p.rejected!r}\n"
              f"  relevance {q.get('chosen_relevance')} / {q.get('rejected_relevance')}, "
              f"refusal {q.get('chosen_refusal')} / {q.get('rejected_refusal')}")
    train = stages["train"].metrics
    curve = train.get("curve") or []
    first_098 = next((int(e.get("step", i + 1)) for i, e in enumerate(curve)
                      if (e.get("rewards/accuracies", e.get("accuracy", 0)) or 0) >= 0.98), 0)
    print(f"train: {train.get('steps')} steps on {train.get('pairs')} pairs; warnings: {train.get('warnings')}")
    ev = stages["evaluate"].metrics.get("evaluation", {})
    print(f"evaluate: {ev.get('wins')} wins, {ev.get('ties')} ties, {ev.get('losses')} losses on {ev.get('n')} held-out; "
          f"mean score {ev.get('mean_score')}")
    for e in (ev.get("examples") or [])[:3]:
        print("  ", json.dumps(e, ensure_ascii=False)[:400])
    answering = ev.get("answering") or {}
    print(f"answering: {json.dumps({k: v for k, v in answering.items() if k != 'warning'})}")
    if answering.get("warning"):
        print(f"  warning: {answering['warning']}")
    nan = float("nan")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"win_rate={ev.get('win_rate', nan):.3f} ci_low={ev.get('ci_low', nan):.3f} "
        f"relevance_win={answering.get('relevance_win', nan):.3f} "
        f"refusal_trained={answering.get('refusal', {}).get('trained', nan):.3f} "
        f"refusal_base={answering.get('refusal', {}).get('base', nan):.3f} "
        f"degenerate_rejected={degenerate_rejected:.3f} reward_acc_step_of_first_098={first_098} wall_s={wall:.0f}"
    )


if __name__ == "__main__":
    main()
