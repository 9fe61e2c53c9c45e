"""How the job system's cost grows with the pool: 10,000, 100,000 and 1,000,000 instructions.

The web app's services and the worker's chunk runner run in this process (it plays the worker;
no broker), with the tiny random Llama from the tests (2 blocks) as the model: a real model whose hidden
states are real, small enough that the model is not what gets timed. Per size, a fresh run:

  upload    the run form's check of the file (read a line at a time) and the import into the
            database in batches (webapp.jobs.stores.instructions_import_upload);
  score     every score chunk (ICON2_SCORE_CHUNK instructions each, 128 per forward pass): rows by an indexed range,
            the model's consistency scores, the write;
  filter    the ranking of the whole pool when the last chunk is in (numpy, batched UPDATEs);
  preview   the threshold slider's preview (webapp.jobs.diagnostics.filter_panel): the first
            call, which reads the stored scores, and the median of five more;
  generate  every generation chunk over the kept tenth (ICON2_PAIR_CHUNK pairs each, 2 tokens).

It runs on SQLite (a temporary file) and, when DATABASE_URL points at PostgreSQL, there too (in a
database of its own, icon2_scale_bench, dropped first). Each database runs in a child process so
that the peak RSS is that database's.

  .venv/bin/python bench/scale.py                       # 10k, 100k, 1M
  .venv/bin/python bench/scale.py --sizes 10000 100000  # a quicker look

Last line: per_item_ratio_1m_vs_10k=<x> peak_rss_mb=<x> preview_ms_1m=<x> (the worse database).
Targets: ratio <= 1.5, preview <= 200 ms at 1M scores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

SCORE_CHUNK, PAIR_CHUNK = 1024, 256
STEPS = ("upload", "score", "filter", "generate")


def _child(size_list: list[int], database_url: str, work: Path) -> None:
    import _django

    _django.setup(database_url, work, ICON2_SCORE_CHUNK=str(SCORE_CHUNK), ICON2_SCORE_BATCH="128",
                  ICON2_GENERATE_BATCH="128", ICON2_PAIR_CHUNK=str(PAIR_CHUNK), ICON2_TORCH_THREADS="1",
                  ICON2_MAX_UPLOAD_MB="500")
    from django.contrib.auth import get_user_model
    from django.core.files import File

    from tests.engine.conftest import make_tiny_lm
    from webapp.accounts.services import team_create
    from webapp.jobs import filtering, services, stores
    from webapp.jobs.diagnostics import filter_panel
    from webapp.jobs.models import Chunk
    from webapp.studio.models import Run, Stage
    from webapp.studio.services import dimension_create, model_create, project_create, run_create, run_launch
    from worker.runner import run_chunk

    lm = make_tiny_lm(n_layers=2)  # the model's own cost is the same per item at every size; keep it small
    lm.model.save_pretrained(work / "tiny")
    lm.tokenizer.save_pretrained(work / "tiny")
    timers: dict[str, float] = {}

    def timed_as(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timers[name] = timers.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    stores.instructions_import_upload = timed_as("import", stores.instructions_import_upload)
    filtering.filter_finalize = timed_as("filter", filtering.filter_finalize)  # services import it when the filter ends

    def drain(run, kind) -> float:
        t0 = time.perf_counter()
        while True:
            ids = list(Chunk.objects.filter(stage__run=run, stage__kind=kind, status=Chunk.Status.QUEUED)
                       .order_by("index").values_list("pk", flat=True)[:64])
            if not ids:
                break
            for pk in ids:
                run_chunk(pk)
        stage = Stage.objects.get(run=run, kind=kind)
        if stage.status != Stage.Status.SUCCEEDED:
            raise SystemExit(f"{kind} did not succeed: {stage.error[:500]}")
        return time.perf_counter() - t0

    owner = get_user_model().objects.create_user(username="bench", password="bench-pass-123")
    team = team_create(name="Scale", owner=owner)
    model = model_create(team=team, created_by=owner, name="Tiny", kind="local_dir", path_or_id=str(work / "tiny"))
    for n in size_list:
        timers.clear()
        project = project_create(team=team, name=f"Pool {n}", description="", created_by=owner)
        dim = dimension_create(project=project, name="Cheer", pairs=[("You are cheerful.", "You are gloomy.")],
                               feature_instructions="Describe the sea.\nTell me about a fox.\nWhat is a dog?", created_by=owner)
        path = work / f"pool-{n}.txt"
        with open(path, "w") as f:
            for i in range(n):
                f.write(f"Describe item {i}.\n")
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            run = run_create(project=project, created_by=owner, model=model, dimensions=[dim], config={
                "name": f"Scale {n}", "instruction_source": "upload", "instructions_file": File(f, name=path.name),
                "keep_fraction": 0.1, "quality_gate": False, "require_review": False, "calibrate": False,
                "max_new_tokens": 2})
        check_s = time.perf_counter() - t0
        # No interactive worker runs the model check here (the chunks are drained in this process), so the
        # launch overrides it, as the launch form's tick box does; the tiny model is built for the bench.
        run_launch(run=run, actor=owner, override_model_check=True)
        drain(run, Stage.Kind.EXTRACT)  # its completion starts the filter stage, which imports the file
        score_s = drain(run, Stage.Kind.FILTER) - timers.get("filter", 0.0)
        run = Run.objects.get(pk=run.pk)
        scores = filtering._filter_scores_ensure(run.stages.get(kind=Stage.Kind.FILTER))
        threshold = float(scores[int(scores.size * 0.8)])
        t0 = time.perf_counter()
        panel = filter_panel(run=run, threshold=threshold)
        cold_ms = 1000 * (time.perf_counter() - t0)
        warm = []
        for _ in range(5):
            t0 = time.perf_counter()
            filter_panel(run=run, threshold=threshold * 0.99)
            warm.append(1000 * (time.perf_counter() - t0))
        assert panel.scored == n and panel.preview_kept == scores.size - int(scores.size * 0.8), panel
        generate_s = drain(run, Stage.Kind.GENERATE)
        pairs = run.pairs.count()
        steps = {"upload": check_s + timers.get("import", 0.0), "score": score_s, "filter": timers.get("filter", 0.0),
                 "generate": generate_s}
        line = json.dumps({
            "size": n, "steps_s": steps, "pairs": pairs, "preview_cold_ms": cold_ms, "preview_warm_ms": statistics.median(warm),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        })
        print(line, flush=True)
        print(f"size done: {line}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="run one database (default: each available)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, work = args.child.split("|", 1)
        _child(args.sizes, url, Path(work))
        return
    import _django

    results = _django.run_children(__file__, args.sizes, "icon2_scale_bench", only=args.only)
    worst = {"ratio": 0.0, "rss": 0.0, "preview": 0.0}
    for name, rows in results.items():
        print(f"\n{name}: seconds per 1,000 instructions (score chunks of {SCORE_CHUNK}, pair chunks of {PAIR_CHUNK})")
        print(f"{'size':>10} " + " ".join(f"{s:>9}" for s in STEPS) + f" {'total':>9} {'preview':>14} {'peak RSS':>9}")
        for r in rows:
            per = {s: 1000 * r["steps_s"][s] / r["size"] for s in STEPS}
            r["per_item"] = sum(per.values())
            print(f"{r['size']:>10,} " + " ".join(f"{per[s]:9.3f}" for s in STEPS) + f" {r['per_item']:9.3f} "
                  f"{r['preview_cold_ms']:6.1f}/{r['preview_warm_ms']:5.1f} ms {r['peak_rss_mb']:7.0f} MB")
        first, last = rows[0], rows[-1]
        worst["ratio"] = max(worst["ratio"], last["per_item"] / first["per_item"])
        worst["rss"] = max(worst["rss"], last["peak_rss_mb"])
        worst["preview"] = max(worst["preview"], last["preview_cold_ms"])
    label = f"{args.sizes[-1] // 1000}k" if args.sizes[-1] < 1_000_000 else f"{args.sizes[-1] // 1_000_000}m"
    print(f"\n(preview: first call / median of the next five; the ratio compares {args.sizes[-1]:,} with {args.sizes[0]:,})")
    print(f"per_item_ratio_{label}_vs_{args.sizes[0] // 1000}k={worst['ratio']:.2f} peak_rss_mb={worst['rss']:.0f} "
          f"preview_ms_{label}={worst['preview']:.1f}")


if __name__ == "__main__":
    main()
