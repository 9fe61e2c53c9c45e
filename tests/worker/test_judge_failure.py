"""A judge that dies mid-stage fails that stage with a clear message, and *Retry* runs it again.

In-process (no broker): a real tiny model saved as a local folder, the real chunk runner, and a
real HTTP endpoint on 127.0.0.1. The endpoint is a stub (scripted answers, not a model): it
answers a few requests and then goes away, which is the failure under test. The real-server
path is tests/engine/test_llm_judge_server.py.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


from webapp.jobs.models import Chunk
from webapp.jobs.services import stage_retry
from webapp.studio.models import Run, Stage
from webapp.studio.services import judge_create, run_create, run_launch


class _Endpoint:
    """A scripted OpenAI-style endpoint that stops after ``budget`` answers (a stub)."""

    def __init__(self, budget: int | None, port: int = 0) -> None:
        self.answered = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                if budget is not None and outer.answered >= budget:
                    self.close_connection = True  # the server dies: no answer at all
                    self.connection.close()
                    return
                outer.answered += 1
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": "7"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _drain(run: Run) -> None:
    """Run every queued chunk of the run, in stage order, until none is left."""
    from worker.runner import run_chunk

    for _ in range(50):
        chunk = Chunk.objects.filter(stage__run=run, status=Chunk.Status.QUEUED).order_by("stage__order", "index").first()
        if chunk is None:
            return
        run_chunk(chunk.pk)


def test_a_judge_that_dies_mid_calibration_fails_the_stage_and_retry_runs_it_again(
        tiny, django_capture_on_commit_callbacks, settings):
    owner, project, dim, model = tiny
    team = project.team
    settings.ICON2_CALIBRATION_SAMPLE = 3
    settings.ICON2_LAUNCH_CHECKS = False  # the endpoint is up at launch in real life; here we kill it mid-stage anyway
    endpoint = _Endpoint(budget=4)
    judge = judge_create(team=team, created_by=owner, name="Flaky", kind="llm", base_url=f"http://127.0.0.1:{endpoint.port}/v1",
                         model_name="m", criterion="cheerful", protocol="scores")
    from django.core.files.base import ContentFile

    upload = ContentFile("\n".join(f"Tell me about thing number {i}." for i in range(8)).encode(), name="pool.txt")
    run = run_create(project=project, created_by=owner, model=model, dimensions=[dim], config={
        "name": "R", "instruction_source": "upload", "instructions_file": upload, "calibrate": True,
        "calibration_judge": judge, "max_new_tokens": 6, "require_review": False})
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=run, actor=owner)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            _drain(run)
        stage = Stage.objects.get(run=run, kind="calibrate")
        assert stage.status == Stage.Status.FAILED, stage.error
        assert "LLM judge at" in stage.error and "unreachable or failing" in stage.error
        assert "Traceback" not in stage.error and endpoint.answered == 4
        assert Run.objects.get(pk=run.pk).status == Run.Status.FAILED
    finally:
        endpoint.close()

    # The endpoint comes back on the same address; Retry runs the stage again and every verdict arrives.
    revived = _Endpoint(budget=None, port=endpoint.port)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            stage_retry(stage=stage)
        with django_capture_on_commit_callbacks(execute=True):
            _drain(Run.objects.get(pk=run.pk))
        stage.refresh_from_db()
        # The sweep ran to its end with every response rated by the endpoint. (On a random tiny model
        # no γ keeps the chosen side coherent, so calibration itself then says so: its own reason, not
        # the judge's.)
        table = stage.metrics["calibration"]["table"]
        grids = {r["gamma_plus"] for r in table} | {r["gamma_minus"] for r in table}
        assert revived.answered == stage.metrics["calibration"]["n_instructions"] * (1 + len(grids)) == 9
        assert "LLM judge" not in stage.error
        assert stage.status == Stage.Status.SUCCEEDED or "calibration picked no γ" in stage.error
    finally:
        revived.close()
