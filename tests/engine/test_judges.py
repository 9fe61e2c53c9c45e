"""Judges: one interface; an LLM judge against a local OpenAI-style server; a reward model from a local folder."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from icon2engine.errors import ConfigError, JudgeError
from icon2engine.judges import Judge, JudgeConfig, LengthJudge, LLMJudge, RewardModelJudge, VaderJudge, make_judge


def test_vader_prefers_the_cheerful_response():
    judge = VaderJudge()
    assert isinstance(judge, Judge)
    assert judge.score("Describe Monday.", "What a wonderful, happy morning!") > 0.5
    assert judge.compare("Describe Monday.", "A lovely fresh start!", "A miserable, awful grind.") == 1.0
    assert judge.compare("Describe Monday.", "A miserable, awful grind.", "A lovely fresh start!") == -1.0
    assert judge.compare("x", "same text", "same text") == 0.0


def test_length_judge_counts_words_or_distance_to_a_target():
    assert LengthJudge().score_many(["", ""], ["one two", "one two three"]) == [2.0, 3.0]
    assert LengthJudge(target=3).compare("", "one two three", "one") == 1.0
    with pytest.raises(ConfigError, match="target length"):
        LengthJudge(target=0)


class _Server:
    """A stub, not a model: a scripted /v1/chat/completions server, for how answers are read, timeouts
    and retries. The real server (`transformers serve`) is in test_llm_judge_server.py."""

    def __init__(self, answers):
        self.answers, self.requests = list(answers), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                status, content = outer.answers.pop(0) if outer.answers else (200, "5")
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_llm_judge_scores_and_compares_through_an_openai_style_endpoint():
    with _Server([(200, "8"), (200, "B"), (200, "tie")]) as server:
        judge = LLMJudge(server.url, "judge-model", api_key="sk-test", criterion="cheerful", retries=0)
        assert judge.score("Describe Monday.", "A fresh start!") == 8.0
        assert judge.compare("Describe Monday.", "meh", "A fresh start!") == -1.0
        assert judge.compare("Describe Monday.", "same", "same") == 0.0
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    assert first["body"]["model"] == "judge-model" and "cheerful" in first["body"]["messages"][0]["content"]


def test_llm_judge_retries_a_server_error_then_succeeds():
    with _Server([(503, "busy"), (200, "7")]) as server:
        judge = LLMJudge(server.url, "m", retries=2, backoff=0.01)
        assert judge.score("q", "a") == 7.0
        assert len(server.requests) == 2


def test_llm_judge_that_answers_nonsense_says_so():
    with _Server([(200, "I cannot rate this.")]) as server:
        with pytest.raises(JudgeError, match="instead of a score"):
            LLMJudge(server.url, "m", retries=0).score("q", "a")


def test_an_unreachable_llm_judge_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = LLMJudge(f"http://127.0.0.1:{port}/v1", "m", timeout=2, retries=1, backoff=0.01)
    with pytest.raises(JudgeError, match=r"unreachable or failing after 2 attempt\(s\).*check base_url"):
        judge.score("q", "a")


def test_judge_configs_say_what_is_missing():
    with pytest.raises(ConfigError, match="needs base_url"):
        JudgeConfig(kind="llm")
    with pytest.raises(ConfigError, match="needs path"):
        JudgeConfig(kind="reward_model")
    with pytest.raises(ConfigError, match="must be one of lexicon, length, formality, reward_model, llm, self"):
        JudgeConfig(kind="gpt4")
    with pytest.raises(ConfigError, match="must start with http"):
        LLMJudge("localhost:8000", "m")
    assert isinstance(make_judge("vader"), VaderJudge)


def test_a_reward_model_judge_loads_any_sequence_classifier_from_a_folder(tmp_path):
    import torch
    from conftest import make_tiny_tokenizer
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = make_tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, num_labels=1, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    judge = make_judge(JudgeConfig(kind="reward_model", path=str(tmp_path / "rm")))
    assert isinstance(judge, RewardModelJudge)
    batched = judge.score_many(["Describe the sea.", "What?", "Tell me about a fox."], ["It is blue.", "A dog.", "Quick and brown."])
    single = [judge.score("Describe the sea.", "It is blue."), judge.score("What?", "A dog."), judge.score("Tell me about a fox.", "Quick and brown.")]
    assert batched == pytest.approx(single, abs=1e-4)  # right padding: the batch does not change a score
    assert judge.compare("What?", "A dog.", "A dog.") == 0.0


def test_a_reward_model_folder_that_is_not_one_is_refused(tmp_path):
    with pytest.raises(JudgeError, match="has no config.json"):
        RewardModelJudge(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(JudgeError, match="could not load a sequence-classification reward model"):
        RewardModelJudge(tmp_path)


def test_a_judge_can_say_lower_is_better_or_aim_at_a_target():
    from icon2engine.judges import JudgeConfig, OrientedJudge, make_judge

    short, long = "Yes.", "Yes, and here is a long answer with many more words in it."
    concise = make_judge(JudgeConfig(kind="length", better="lower"))
    assert concise.score("", short) > concise.score("", long) and concise.compare("", short, long) == 1.0
    gloomy = make_judge(JudgeConfig(kind="vader", better="lower"))
    assert isinstance(gloomy, OrientedJudge) and gloomy.name == "vader (lower is better)"
    assert gloomy.compare("", "What a wonderful, happy day!", "This is awful and sad.") == -1.0
    aim = make_judge(JudgeConfig(kind="length", target=3.0))
    assert aim.score_many(["", ""], ["one two three", "one"]) == [0.0, -2.0]
    with pytest.raises(ConfigError, match="higher or lower"):
        JudgeConfig(kind="vader", better="up")


def test_the_self_judge_asks_the_model_in_both_orders(tiny_lm):
    from icon2engine.judges import SelfJudge

    judge = make_judge(JudgeConfig(kind="self", criterion="cheerful"), lm=tiny_lm)
    assert isinstance(judge, SelfJudge) and judge.name.startswith("self:")
    a, b = "What a lovely day!", "It is grim."
    forward, backward = judge.compare("Describe the sea.", a, b), judge.compare("Describe the sea.", b, a)
    assert -1.0 <= forward <= 1.0 and forward == pytest.approx(-backward, abs=1e-5)  # the order cannot decide it
    scores = judge.score_many(["Describe the sea."] * 3, [a, b, "Ok."])
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)
    assert scores[:2] == pytest.approx([judge.score("Describe the sea.", a), judge.score("Describe the sea.", b)], abs=1e-4)
    with pytest.raises(ConfigError, match="pass lm="):
        make_judge(JudgeConfig(kind="self"))
    assert JudgeConfig(kind="vader").kind == "lexicon"  # the old name still works


@pytest.mark.slow
def test_the_embedded_model_as_self_judge_prefers_the_answer_that_fits_the_criterion(embedded_lm):
    from icon2engine.judges import SelfJudge

    judge = SelfJudge(embedded_lm, criterion="polite and helpful")
    good = "Of course! Paris is the capital of France. Let me know if you would like more travel tips."
    bad = "Figure it out yourself. I am not your search engine."
    assert judge.compare("What is the capital of France?", good, bad) > 0


def test_llm_judge_reads_a_quoted_answer_and_compares_by_scores_when_asked():
    # The scripted server above is a stub: it checks how answers are read, not a real model.
    opening = "The sea is vast, sparkling and full of"
    with _Server([(200, opening), (200, "Well, it depends"), (200, "3"), (200, "9")]) as server:
        judge = LLMJudge(server.url, "m", retries=0)
        assert judge.compare("Sea?", opening + " joyful life.", "The sea is cold.") == 1.0
        with pytest.raises(JudgeError, match="protocol 'scores'"):
            judge.compare("Sea?", "one", "two")
        by_scores = make_judge(JudgeConfig(kind="llm", base_url=server.url, model="m", protocol="scores", retries=0))
        assert by_scores.compare("Sea?", "dull", "bright") == -1.0
    assert judge.answered == 2 and by_scores.answered == 2
    messages = server.requests[0]["body"]["messages"]
    assert messages[0]["role"] == "system" and [m["role"] for m in messages[1:]] == ["user", "assistant"] * 2 + ["user"]
    with pytest.raises(ConfigError, match="protocol"):
        JudgeConfig(kind="llm", base_url=server.url, model="m", protocol="vibes")
