"""The review pages with 100,000 pairs: the annotator's next pair, the lead page and the export.

In-process (Django's test client against the real views and a real database): a run with N
pairs made in bulk, the owner and two annotators with every pair assigned to one of them (review_k = 1),
and the first annotator 300 verdicts in (fewer on a small run) (through the review services, as the page gives them). Then:

  next pair  GET /runs/<id>/review/ as that annotator, 40 times: p50/p95 ms and the queries each
             request makes. Done at 1,000 pairs as well, so the query count is seen not to grow;
  lead page  GET /runs/<id>/review/agreement/ as the owner, 3 times (median ms);
  export     GET …/export/jsonl/ streamed to the end (seconds, and peak RSS growth).

SQLite (a temporary file), and PostgreSQL too when DATABASE_URL points there.
Last line: next_pair_p95_ms=<ms> queries_per_request=<n> (the worse database, at the largest size).
Targets: p95 <= 50 ms, and a query count that does not grow with the data.
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

VERDICTS = 300


def _child(sizes: list[int], database_url: str, work: Path) -> None:
    import _django

    _django.setup(database_url, work, ALLOWED_HOSTS="testserver")
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from webapp.accounts.roles import Role
    from webapp.accounts.services import membership_add, team_create
    from webapp.jobs.models import Instruction, Pair
    from webapp.review import selectors, services
    from webapp.review.models import ReviewAssignment
    from webapp.studio.models import Run
    from webapp.studio.services import dimension_create, model_embedded_ensure, project_create, run_create

    users = get_user_model().objects
    owner = users.create_user(username="olivia", password="pw-bench-123")
    anna = users.create_user(username="anna", password="pw-bench-123")
    ben = users.create_user(username="ben", password="pw-bench-123")
    team = team_create(name="Review at scale", owner=owner)
    membership_add(team=team, user=anna, role=Role.ANNOTATOR, actor=owner)
    membership_add(team=team, user=ben, role=Role.ANNOTATOR, actor=owner)
    for n in sizes:
        project = project_create(team=team, name=f"Pairs {n}", description="", created_by=owner)
        dim = dimension_create(project=project, name="Cheer", pairs=[("You are cheerful.", "You are gloomy.")], created_by=owner)
        run = run_create(project=project, created_by=owner, model=model_embedded_ensure(), dimensions=[dim],
                         config={"name": f"Review {n}", "require_review": True, "review_k": 1})
        Run.objects.filter(pk=run.pk).update(status=Run.Status.PAUSED)
        t0 = time.perf_counter()
        for start in range(0, n, 5000):
            stop = min(n, start + 5000)
            rows = Instruction.objects.bulk_create(
                Instruction(run=run, index=i, text=f"Describe item {i} in a sentence.", source="uploaded", kept=True, rank=i,
                            consistency=1.0 - i / n) for i in range(start, stop))
            Pair.objects.bulk_create(
                Pair(run=run, instruction=r, dimension=dim, chosen=f"Item {r.index} is a lovely, bright thing!",
                     rejected=f"Item {r.index} is grim and dull.", gamma_plus=0.08, gamma_minus=-0.03, layers=[10, 11],
                     quality={"chosen_words": 6, "rejected_words": 5}) for r in rows)
        services.review_assign(run=run)
        build_s = time.perf_counter() - t0
        for _ in range(min(VERDICTS, ReviewAssignment.objects.filter(run=run, annotator=anna).count() // 2)):
            nxt = selectors.assignment_next_for_user(run=run, user=anna)
            services.verdict_submit(run=run, user=anna, assignment_id=nxt.pk, choice="left")
        client = Client()
        client.force_login(anna)
        url = f"/runs/{run.pk}/review/"
        client.get(url)  # warm
        times, queries = [], []
        for _ in range(40):
            with CaptureQueriesContext(connection) as captured:
                t0 = time.perf_counter()
                response = client.get(url)
                times.append(1000 * (time.perf_counter() - t0))
            assert response.status_code == 200 and b"Describe item" in response.content, response.status_code
            queries.append(len(captured.captured_queries))
            if os.environ.get("BENCH_SLOWEST") and len(times) == 40:
                for q in sorted(captured.captured_queries, key=lambda q: -float(q["time"]))[:4]:
                    print(f"slow {q['time']}s {q['sql'][:300]}", file=sys.stderr)
        lead = Client()
        lead.force_login(owner)
        lead_ms = []
        for _ in range(3):
            t0 = time.perf_counter()
            assert lead.get(f"/runs/{run.pk}/review/agreement/").status_code == 200
            lead_ms.append(1000 * (time.perf_counter() - t0))
        Run.objects.filter(pk=run.pk).update(require_review=False)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        response = lead.get(f"/runs/{run.pk}/export/jsonl/")
        lines = sum(part.count(b"\n") for part in response.streaming_content)
        export_s = time.perf_counter() - t0
        assert lines == n, (lines, n)
        times.sort()
        print(json.dumps({
            "size": n, "build_s": build_s, "next_p50_ms": statistics.median(times), "next_p95_ms": times[int(0.95 * len(times)) - 1],
            "queries": max(queries), "lead_ms": statistics.median(lead_ms), "export_s": export_s,
            "export_rss_growth_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0,
            "assignments": ReviewAssignment.objects.filter(run=run).count(),
        }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, work = args.child.split("|", 1)
        _child(args.sizes, url, Path(work))
        return
    import _django

    worst_p95, worst_queries, grows = 0.0, 0, False
    for name, rows in _django.run_children(__file__, args.sizes, "icon2_review_bench").items():
        print(f"\n{name}")
        print(f"{'pairs':>9} {'next p50':>9} {'next p95':>9} {'queries':>8} {'lead page':>10} {'export':>8} {'RSS +':>7}")
        for r in rows:
            print(f"{r['size']:>9,} {r['next_p50_ms']:7.1f}ms {r['next_p95_ms']:7.1f}ms {r['queries']:>8} "
                  f"{r['lead_ms']:8.0f}ms {r['export_s']:7.1f}s {r['export_rss_growth_mb']:5.0f}MB")
        worst_p95 = max(worst_p95, rows[-1]["next_p95_ms"])
        worst_queries = max(worst_queries, rows[-1]["queries"])
        grows = grows or rows[-1]["queries"] > rows[0]["queries"]
    print(f"\n(queries per request {'grow' if grows else 'do not grow'} from {args.sizes[0]:,} to {args.sizes[-1]:,} pairs)")
    print(f"next_pair_p95_ms={worst_p95:.1f} queries_per_request={worst_queries}")


if __name__ == "__main__":
    main()
