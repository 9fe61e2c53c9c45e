"""Live progress and scale-out, measured on real processes (daphne, Redis, Celery, SQLite).

1. Latency: the worker-side progress call (webapp.jobs.services.chunk_progress: the database
   write plus the channel-layer send) to the browser-side WebSocket receiving it, over a few
   hundred events; p50 and p95.
2. Scale-out: the same run (16 instructions, generation in chunks of 2 pairs) with one worker
   and with two worker processes (1 torch thread each, as one process per GPU would be);
   generation wall time of each and the share of chunks the less busy worker took.
Last line: progress_p95_ms=<ms> two_workers_speedup=<ratio> chunk_share_min=<fraction>
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.helpers import INSTRUCTIONS, create_run, launch  # noqa: E402
from tests.integration.stack import Browser, RedisServer, Stack, wait_for  # noqa: E402

N_EVENTS = 300


def measure_latency(stack: Stack, demo: Browser) -> list[float]:
    import websockets

    run_id = create_run(demo, name="Latency", instructions=INSTRUCTIONS[:2])
    launch(demo, run_id)  # no worker runs: the bench itself plays the worker below
    from webapp.jobs import services
    from webapp.jobs.models import Chunk

    chunk_id = wait_for(lambda: Chunk.objects.filter(stage__run_id=run_id).values_list("pk", flat=True).first(), 30, "chunk")
    chunk = services.chunk_claim(chunk_id=chunk_id, worker="bench")
    called: dict[int, float] = {}
    received: dict[int, float] = {}
    ready = threading.Event()

    async def listen():
        uri = f"ws://127.0.0.1:{stack.port}/ws/runs/{run_id}/?format=json"
        async with websockets.connect(uri, additional_headers={"Cookie": demo.session_cookie, "Origin": stack.url("")}) as ws:
            ready.set()
            while len(received) < N_EVENTS:
                event = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                if event.get("type") == "stage" and event.get("stage") == "extract" and event["done"] >= 1000:
                    received.setdefault(event["done"], time.time())

    listener = threading.Thread(target=lambda: asyncio.run(listen()))
    listener.start()
    ready.wait(30)
    time.sleep(0.5)
    for k in range(1000, 1000 + N_EVENTS):
        called[k] = time.time()
        services.chunk_progress(chunk=chunk, done=k)
        time.sleep(0.01)
    listener.join(60)
    return [1000 * (received[k] - called[k]) for k in called if k in received]


def generation_run(stack: Stack, demo: Browser, name: str) -> tuple[float, dict[str, int]]:
    from webapp.jobs.models import Chunk
    from webapp.studio.models import Run, Stage

    run_id = create_run(demo, name=name, instructions=INSTRUCTIONS + INSTRUCTIONS[:4], max_new_tokens=32)
    launch(demo, run_id)
    wait_for(lambda: Run.objects.get(pk=run_id).status in ("succeeded", "failed"), 1200, f"run {name}", interval=0.5)
    stage = Stage.objects.get(run_id=run_id, kind="generate")
    assert stage.status == "succeeded", stage.error
    share: dict[str, int] = {}
    for c in Chunk.objects.filter(stage=stage):
        share[c.worker] = share.get(c.worker, 0) + 1
    return (stage.finished_at - stage.started_at).total_seconds(), share


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="icon2-bench-"))
    redis = RedisServer(work)
    redis.start()
    stack = Stack(work, f"sqlite:///{work / 'bench.sqlite3'}", redis,
                  {"ICON2_PAIR_CHUNK": "2", "ICON2_TORCH_THREADS": "1", "ICON2_PROGRESS_INTERVAL_MS": "0"})
    os.environ.update({k: stack.env[k] for k in ("DATABASE_URL", "REDIS_URL", "ICON2_MEDIA_ROOT", "SECRET_KEY", "ALLOWED_HOSTS")})
    os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings"
    os.environ["ICON2_QUEUE"] = "none"  # the bench process never enqueues; the web and workers do
    import django

    django.setup()
    try:
        stack.manage("migrate", "--noinput")
        stack.manage("bootstrap_demo")
        stack.start_web()
        demo = Browser(stack)
        demo.login("demo", "integration-pass-123")
        lat = sorted(measure_latency(stack, demo))
        p50, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
        print(f"progress events: {len(lat)} received of {N_EVENTS}; latency p50={p50:.1f} ms p95={p95:.1f} ms")

        stack.start_beat()
        stack.start_worker("w1")
        t_one, share_one = generation_run(stack, demo, "One worker")
        print(f"one worker:  generation {t_one:.1f} s, chunks {share_one}")
        stack.start_worker("w2")
        time.sleep(5)
        t_two, share_two = generation_run(stack, demo, "Two workers")
        print(f"two workers: generation {t_two:.1f} s, chunks {share_two}")
        total = sum(share_two.values())
        share_min = min(share_two.values()) / total if len(share_two) > 1 else 0.0
        print(f"progress_p95_ms={p95:.1f} two_workers_speedup={t_one / t_two:.2f} chunk_share_min={share_min:.2f}")
    finally:
        stack.stop_all()
        redis.stop()


if __name__ == "__main__":
    main()
