"""Run one job: claim it, keep its heartbeat going, do the work, write results.

Chunks, playground tries and audits share this lifecycle (webapp.jobs.lifecycle): a job whose
heartbeat stops is re-queued or failed by the periodic check, and tasks acknowledge their
message only when done (worker.tasks), so a killed worker's message comes back harmlessly."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import traceback
from typing import Callable, Iterator

from django.db import close_old_connections, connection

from icon2engine import Icon2Error, StopRequested

log = logging.getLogger(__name__)

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


def _set_threads() -> None:
    from django.conf import settings

    if settings.ICON2_TORCH_THREADS:
        import torch

        torch.set_num_threads(settings.ICON2_TORCH_THREADS)


_set_threads()


class Heartbeat:
    """Calls ``beat()`` every few seconds from a background thread, so a long batch is not
    mistaken for a dead worker; ``beat`` returns True once the job should stop (the run was
    cancelled, or the job is no longer ours), which ``cancelled`` then says between progress calls."""

    def __init__(self, beat: Callable[[], bool], every_s: float) -> None:
        self.beat = beat
        self.every_s = every_s
        self.cancelled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="icon2-heartbeat", daemon=True)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.every_s):
                try:
                    self.cancelled = self.beat() or self.cancelled
                except Exception as exc:  # the database may be briefly unavailable
                    log.warning("heartbeat failed: %s", exc)
        finally:
            connection.close()

    @contextlib.contextmanager
    def running(self) -> Iterator["Heartbeat"]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)


def run_chunk(chunk_id: int) -> None:
    from django.conf import settings

    from webapp.jobs import services
    from worker import stages

    close_old_connections()
    chunk = services.chunk_claim(chunk_id=chunk_id, worker=WORKER_NAME)
    if chunk is None:
        log.info("chunk %s is not ours (taken, finished or cancelled); nothing to do", chunk_id)
        return
    handler = stages.HANDLERS[chunk.stage.kind]
    try:
        with Heartbeat(lambda: services.chunk_heartbeat(chunk=chunk), settings.ICON2_HEARTBEAT_S).running() as beat:
            write, compute = handler(chunk, beat)
        if not services.chunk_complete(chunk=chunk, write=write, compute=compute):
            log.warning("chunk %s was re-queued while we worked; our results were dropped", chunk_id)
    except StopRequested:
        services.chunk_fail(chunk=chunk, error="cancelled", cancelled=True)
    except Icon2Error as exc:  # a StageFailed carries metrics to keep (worker.stages)
        services.chunk_fail(chunk=chunk, error=str(exc), metrics=getattr(exc, "metrics", None))
    except Exception as exc:
        log.exception("chunk %s failed", chunk_id)
        services.chunk_fail(chunk=chunk, error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=6)}")
    finally:
        close_old_connections()


def run_claimed(what: str, row_id: int, *, claim, heartbeat, fail, body) -> None:
    """One interactive job (a playground try, a bias audit): ``claim(row_id, WORKER_NAME)`` takes
    the row (None: someone else has it or it is done), ``heartbeat(row)`` keeps it ours (False: the
    periodic check gave it up) while ``body(row)`` does the work and stores its result, and any
    failure is stored with its reason by ``fail(row, error)``, never a traceback for bad input."""
    from django.conf import settings
    from django.core.exceptions import ValidationError

    close_old_connections()
    row = claim(row_id, WORKER_NAME)
    if row is None:
        log.info("%s %s is not ours (taken or finished)", what, row_id)
        return
    try:
        with Heartbeat(lambda: not heartbeat(row), settings.ICON2_HEARTBEAT_S).running():
            body(row)
    except (Icon2Error, ValidationError) as exc:
        fail(row, "; ".join(getattr(exc, "messages", None) or [str(exc)]))
    except Exception as exc:
        log.exception("%s %s failed", what, row_id)
        fail(row, f"{type(exc).__name__}: {exc}")
    finally:
        close_old_connections()
