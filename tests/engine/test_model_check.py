"""The model check: what a model is, how it is prompted, and whether its own unsteered answers are fluent."""
from __future__ import annotations

import json

import pytest

import icon2engine.model_check as model_check
from icon2engine.generation import Generation
from icon2engine.model_check import CHECK_INSTRUCTIONS, blocks_not_found, check_model
from icon2engine.tiny_models import tiny_family_model


def _answers(monkeypatch, texts: list[str]) -> None:
    """Replace the unsteered generation with fixed answers (a random model writes no language)."""
    def fake(lm, instructions, config, **kwargs):
        return Generation(texts=list(texts), prompt_tokens=[10] * len(texts), new_tokens=[20] * len(texts))

    monkeypatch.setattr(model_check, "generate_rows", fake)


FLUENT = [
    "Rain taps on the window while the kettle boils, and the street outside is grey and quiet.",
    "Porridge with fruit and a boiled egg gives you slow energy for the walk ahead.",
    "Float on your back first, then practise kicking, and breathe out slowly under water.",
    "Dear Sam, we walked by the river on Saturday and cooked a big dinner on Sunday.",
]


def test_it_records_what_the_model_is_and_how_it_is_prompted(tiny_lm, monkeypatch):
    _answers(monkeypatch, FLUENT)
    check = check_model(tiny_lm)
    d = json.loads(json.dumps(check.as_dict()))  # small JSON, as it crosses to the web
    assert d["ok"] is True and d["flags"] == []
    assert (d["architecture"], d["model_type"], d["layers_path"]) == ("LlamaForCausalLM", "llama", "model.layers")
    assert (d["layers"], d["hidden_size"], d["context_length"]) == (4, 64, 256)
    assert d["chat_template"] is True and d["system_role"] is True
    assert d["bos"] == {"wants_bos": False, "bos_token": "<|im_start|>", "template_writes_bos": True,
                        "prompt_starts_with_bos": True}
    assert d["stop_tokens"] == ["<|im_end|>"]
    assert [a["instruction"] for a in d["answers"]] == list(CHECK_INSTRUCTIONS)
    assert all(a["reasons"] == [] and a["words"] > 5 for a in d["answers"])


def test_it_flags_a_base_model_without_a_chat_template(monkeypatch):
    _answers(monkeypatch, FLUENT)
    check = check_model(tiny_family_model("gpt2"))
    assert not check.ok
    assert [f["code"] for f in check.flags] == ["base_model"]
    assert "base model" in check.flags[0]["message"] and "instruction-tuned" in check.flags[0]["fix"]
    assert check.chat_template is False


def test_it_flags_a_model_whose_unsteered_answers_loop_and_does_not_blame_gamma(tiny_lm, monkeypatch):
    # The generation is replaced by answers that loop, as a Gemma GGUF without its BOS answers.
    looping = ["the the the the the the the the the the the the the the the the"] * 3 + [FLUENT[0]]
    _answers(monkeypatch, looping)
    check = check_model(tiny_lm)
    assert [f["code"] for f in check.flags] == ["degenerate_answers"]
    flag = check.flags[0]
    assert "3 of 4" in flag["message"] and "before any steering" in flag["message"]
    assert "BOS" in flag["fix"] and "base model" in flag["fix"] and "cannot help" in flag["fix"]
    assert sum(bool(a["reasons"]) for a in check.answers) == 3


def test_a_gemma_style_model_has_no_system_role_and_its_bos_once(monkeypatch):
    _answers(monkeypatch, FLUENT)
    check = check_model(tiny_family_model("gemma3"))
    assert check.ok and check.system_role is False and check.notes
    assert check.bos["wants_bos"] and check.bos["template_writes_bos"] and check.bos["prompt_starts_with_bos"]
    assert "<end_of_turn>" in check.stop_tokens


def test_a_model_whose_blocks_cannot_be_found_gets_a_failed_check():
    from icon2engine.errors import LayerDetectionError

    check = blocks_not_found("odd-model", LayerDetectionError("could not find the decoder layers of Odd"))
    d = check.as_dict()
    assert d["ok"] is False and d["flags"][0]["code"] == "blocks_not_found"
    assert "layers_attr" in d["flags"][0]["fix"]


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_the_check_runs_for_real_on_a_tiny_model(family):
    check = check_model(tiny_family_model(family), max_new_tokens=6)
    assert len(check.answers) == 4 and check.seconds > 0
    assert {"words", "repetition", "distinct2", "foreign"} <= set(check.answers[0])


@pytest.mark.slow
def test_the_embedded_model_passes_its_check(embedded_lm):
    check = check_model(embedded_lm)
    assert check.ok, check.flags
    assert check.chat_template and check.system_role and check.layers == 30 and check.hidden_size == 576
    assert check.bos == {"wants_bos": False, "bos_token": "<|im_start|>", "template_writes_bos": True,
                         "prompt_starts_with_bos": True}


def test_the_command_line_check_flags_a_base_model_folder(tmp_path, capsys):
    from icon2engine.cli import main

    lm = tiny_family_model("gpt_neox")
    lm.model.save_pretrained(tmp_path / "base")
    lm.tokenizer.save_pretrained(tmp_path / "base")
    code = main(["check", "--model", str(tmp_path / "base"), "--max-new-tokens", "4", "--out", str(tmp_path / "c.json")])
    out = capsys.readouterr().out
    assert code == 1 and "FLAG base_model" in out and "check FAILED" in out
    assert json.loads((tmp_path / "c.json").read_text())["flags"][0]["code"] == "base_model"
