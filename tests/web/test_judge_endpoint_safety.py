"""The one judge client (icon2engine.endpoints) against real listeners on 127.0.0.1 (issue 29).

Olivia saves a team judge with her API key. Eddie, an engineer of her team, may edit the judge
and launch runs; he must not be able to make the studio send her key anywhere else: not by
moving the base URL to his own listener, not by a redirect, and not to the cloud's metadata
service or the office network. Each listener records every request it gets.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from icon2engine.endpoints import EndpointPolicy, EndpointRefused, request_json
from icon2engine.errors import JudgeError
from icon2engine.judges import JudgeConfig, make_judge
from webapp.studio.models import Judge, Run
from webapp.studio.preflight import NOT_OPENAI
from webapp.studio.services import judge_create, run_create, run_launch

SECRET = "sk-olivias-key-0123456789"
MODELS = {"object": "list", "data": [{"id": "judge-model"}]}
CHAT = {"choices": [{"message": {"content": "7"}}]}


class Listener:
    """An HTTP server on 127.0.0.1 that records each request and answers `status` (a JSON model
    list, a chat answer, or a redirect to `location`)."""

    def __init__(self, status: int = 200, *, location: str | None = None) -> None:
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                       "body": self.rfile.read(length).decode()})
                body = json.dumps(CHAT if self.command == "POST" else MODELS).encode()
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def saw_the_key(self) -> bool:
        return any(SECRET in json.dumps(r) for r in self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listeners():
    made: list[Listener] = []

    def make(status: int = 200, **kwargs) -> Listener:
        made.append(Listener(status, **kwargs))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def _judge_fields(base_url: str, api_key: str = SECRET) -> dict:
    return {"name": "Helpfulness by Qwen", "kind": "llm", "better": "higher", "base_url": base_url,
            "model_name": "judge-model", "api_key": api_key, "criterion": "Which answer is more helpful?", "path": "",
            "protocol": "pairwise"}


def _launch(ours, actor, judge: Judge) -> list[str]:
    run = run_create(project=ours.project, created_by=actor, model=ours.run.model, dimensions=[ours.dimension],
                     config={"name": f"Judged {Run.objects.count()}", "eval_judge": judge})
    try:
        run_launch(run=run, actor=actor)
    except ValidationError as error:
        return error.messages
    return []


def test_eddie_moves_olivias_judge_to_his_listener_and_her_key_never_reaches_it(
    ours, owner, engineer, client_for, listeners, django_capture_on_commit_callbacks
):
    honest, eddies = listeners(), listeners()
    judge = judge_create(team=ours.team, created_by=owner, **_judge_fields(honest.url))
    with django_capture_on_commit_callbacks(execute=False):
        assert _launch(ours, owner, judge) == []
    assert honest.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"  # her key, to her endpoint

    # Eddie points the judge at his listener and leaves the key blank ("keep the stored one").
    response = client_for(engineer).post(reverse("studio:judge_edit", args=[judge.pk]),
                                         _judge_fields(eddies.url, api_key=""), follow=True)
    assert response.status_code == 200 and "the stored API key was cleared" in response.content.decode()
    judge.refresh_from_db()
    assert judge.base_url == eddies.url and judge.api_key == "" and judge.api_key_origin == ""
    with django_capture_on_commit_callbacks(execute=False):
        _launch(ours, engineer, judge)
    worker_judge = make_judge(JudgeConfig(**judge.engine_config()))  # what calibration and evaluation use
    assert worker_judge.score("Describe Monday.", "A fresh start!") == 7.0
    assert len(eddies.requests) == 2 and not eddies.saw_the_key()

    # A row whose base URL moved behind the service's back (an old row, a hand edit) keeps the key
    # for its old origin only: the launch check and the judge refuse before sending anything.
    Judge.objects.filter(pk=judge.pk).update(api_key=SECRET, api_key_origin=judge_origin(honest))
    judge.refresh_from_db()
    eddies.requests.clear()
    assert "saved for another address" in _launch(ours, engineer, judge)[0]
    with pytest.raises(JudgeError, match="saved for another address"):
        make_judge(JudgeConfig(**judge.engine_config())).score("q", "a")
    assert eddies.requests == []


def judge_origin(listener: Listener) -> str:
    return listener.url.rsplit("/", 1)[0]


def test_a_redirect_is_not_followed_and_the_launch_says_no_more_than_that_it_failed(ours, owner, listeners):
    target = listeners()
    redirector = listeners(302, location=f"{target.url}/models")
    judge = judge_create(team=ours.team, created_by=owner, **_judge_fields(redirector.url))
    assert _launch(ours, owner, judge) == [f"The evaluation judge {judge.name}: {NOT_OPENAI}."]
    with pytest.raises(JudgeError, match="redirect"):
        make_judge(JudgeConfig(**judge.engine_config(), retries=0)).score("q", "a")
    assert len(redirector.requests) == 2 and target.requests == []


@pytest.mark.parametrize("url, kind", [
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[fe80::1]:8000/v1", "link-local"),
    ("http://10.0.0.7:8000/v1", "private"),
    ("http://192.168.1.20/v1", "private"),
    ("http://[fd00::1]/v1", "private"),
])
def test_link_local_and_private_addresses_are_refused_by_default(ours, owner, url, kind):
    judge = judge_create(team=ours.team, created_by=owner, **_judge_fields(url))
    problems = _launch(ours, owner, judge)
    assert f"is a {kind} address" in problems[0] and "ICON2_JUDGE_ALLOWED_HOSTS" in problems[0]
    with pytest.raises(EndpointRefused, match=kind):
        request_json("GET", url, policy=EndpointPolicy())  # the engine's own default refuses them too


def test_a_production_site_refuses_loopback_unless_the_operator_allows_it(ours, owner, listeners, settings):
    listener = listeners()
    settings.ICON2_JUDGE_ALLOWED_HOSTS = []  # settings_production's default
    for base_url in (listener.url, listener.url.replace("127.0.0.1", "localhost")):
        judge = judge_create(team=ours.team, created_by=owner, **{**_judge_fields(base_url), "name": f"J {base_url}"})
        assert "is a loopback address" in _launch(ours, owner, judge)[0]
    assert listener.requests == []

    settings.ICON2_JUDGE_ALLOWED_HOSTS = ["127.0.0.1"]  # the operator allows the judge beside the studio
    assert _launch(ours, owner, Judge.objects.get(base_url=listener.url)) == []
    assert len(listener.requests) == 1 and listener.requests[0]["path"] == "/v1/models"
