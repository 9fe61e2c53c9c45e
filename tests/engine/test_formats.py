"""The formats the engine and the web app share (icon2engine.formats): one parser for instruction
files, one TRL row, one default band, one centred top-k. The engine's CLI reader and the studio's
upload form must agree on every file, and the web's ranking must match the engine's."""
from __future__ import annotations

import numpy as np
import pytest

from icon2engine import InputError, read_instructions
from icon2engine.formats import centred_top_k, default_layers, instructions_iter, prompt_id, top_k, trl_row

FILES = {
    "plain.txt": "Write a poem.\n\n  Explain DNS.  \r\n",
    "objects.jsonl": '"Write a poem."\n{"instruction": "Explain DNS."}\n\n{"prompt": "Hi"}\n{"question": "Why?"}\n',
    "blank-rows.csv": "id,Instruction\n1,Write a poem.\n,\n2,\"Explain DNS, briefly.\"\n",
    "question.csv": "question,id\nWhat is rain?,1\n",
    "bom.txt": "\ufeffFirst line.\nSecond.\n",
}
BAD = {
    "broken.jsonl": ('"ok"\n{broken\n', "line 2: not valid JSON"),
    "empty-cell.csv": ("instruction,id\nfine,1\n,2\n", "line 3: the instruction is empty"),
    "no-column.csv": ("id,body\n1,x\n", 'line 1: a CSV needs a header row with an "instruction" column'),
    "nul.txt": ("fine\nbad\x00\n", "line 2: contains a NUL character"),
    "open-quote.csv": ('instruction\n"never closed\n', "line 2: a quoted field starts here and never ends"),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_cli_reader_and_the_upload_form_read_a_file_alike(name, tmp_path):
    from webapp.studio.instructions import instructions_parse

    path = tmp_path / name
    path.write_bytes(FILES[name].encode("utf-8"))
    assert read_instructions(path) == instructions_parse(name=name, data=FILES[name].encode("utf-8"))
    assert all(t == t.strip() and t for t in read_instructions(path))


@pytest.mark.parametrize("name", sorted(BAD))
def test_the_cli_reader_and_the_upload_form_name_the_same_bad_line(name, tmp_path):
    from django.core.exceptions import ValidationError

    from webapp.studio.instructions import instructions_parse

    text, says = BAD[name]
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(InputError) as engine:
        read_instructions(path)
    with pytest.raises(ValidationError) as web:
        instructions_parse(name=name, data=text.encode("utf-8"))
    assert str(engine.value).startswith(f"{path}, {says}")
    assert web.value.messages[0].startswith("L" + says[1:])
    assert str(engine.value).removeprefix(f"{path}, l") == web.value.messages[0].removeprefix("L")


def test_a_limit_and_a_named_column_apply():
    import io

    with pytest.raises(InputError, match="Line 1: the instruction is 12 characters; the limit is 5"):
        list(instructions_iter(name="a.txt", stream=io.BytesIO(b"twelve chars"), max_chars=5))
    got = list(instructions_iter(name="a.csv", stream=io.BytesIO(b"text,Body\nno,yes\n"), column="body"))
    assert got == ["yes"]


def test_the_trl_row_and_its_prompt_id():
    row = trl_row("Hi?", "Hello!", "Go away.", seed=3)
    assert row == {"prompt": [{"role": "user", "content": "Hi?"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
                   "rejected": [{"role": "assistant", "content": "Go away."}], "prompt_id": prompt_id("Hi?"), "seed": 3}
    assert len(prompt_id("Hi?")) == 64 and prompt_id("Hi?") != prompt_id("Hi")


def test_the_default_band_is_the_middle_third_and_the_run_model_uses_it():
    from webapp.studio.models import Run

    assert default_layers(30) == tuple(range(10, 20)) and default_layers(2) == (0,)
    for n in (1, 2, 3, 8, 30, 32):
        band = default_layers(n)
        assert Run(layer_start=None, layer_end=None).layer_band(n) == (band[0], band[-1])


def test_centred_top_k_matches_the_engine_selection():
    from icon2engine.filtering import ConsistencyScores, select_top

    rng = np.random.default_rng(0)
    raw = rng.normal(size=(50, 3)) + np.array([5.0, 0.0, -1.0])  # dimension 0 has a large offset
    raw[7] = raw[8]  # a tie, broken by index
    out = centred_top_k(raw, np.arange(50), keep_fraction=0.2)
    centred = raw - raw.mean(axis=0)
    sel = select_top(ConsistencyScores(instructions=[str(i) for i in range(50)], dimensions=["a", "b", "c"],
                                       scores=centred, paper_scores=raw, method="centred", layers=(0,), layer_means=None),
                     keep_fraction=0.2)
    assert out["keep"] == len(sel.indices) == 10
    assert list(np.flatnonzero(out["kept"])) == sorted(sel.indices)
    assert [int(i) for i in np.argsort(out["rank"])[:10]] == sel.indices
    assert out["threshold"] == pytest.approx(sel.threshold)
    assert set(out["winner"][out["kept"]]) != {0}  # centring: the offset dimension does not win everything
    assert top_k(np.array([]), np.array([]), keep_fraction=0.5)["keep"] == 0
    assert centred_top_k(np.zeros((0, 2)), np.zeros(0), keep=3)["threshold"] is None


@pytest.mark.parametrize("value, expected", [("1", True), ("TRUE", True), ("on", True), (" yes ", True),
                                             ("0", False), ("false", False), ("Off", False)])
def test_a_switch_reads_as_people_write_it(value, expected):
    from icon2engine.formats import parse_flag

    assert parse_flag("ICON2_ALLOW_DOWNLOAD", value) is expected


def test_a_switch_that_is_not_one_is_an_error_not_off(monkeypatch):
    from icon2engine import ConfigError
    from icon2engine.formats import env_flag

    monkeypatch.setenv("ICON2_ALLOW_DOWNLOAD", "ture")
    with pytest.raises(ConfigError, match=r"ICON2_ALLOW_DOWNLOAD='ture' is not a boolean"):
        env_flag("ICON2_ALLOW_DOWNLOAD")
    monkeypatch.setenv("ICON2_ALLOW_DOWNLOAD", "true")  # used to mean off: only "1" counted
    assert env_flag("ICON2_ALLOW_DOWNLOAD") is True
    monkeypatch.delenv("ICON2_ALLOW_DOWNLOAD")
    assert env_flag("ICON2_ALLOW_DOWNLOAD") is False


def test_the_worker_reads_the_download_switch_from_settings(settings):
    from webapp.studio.models import ModelSpec
    from worker.model_cache import engine_spec

    settings.ICON2_ALLOW_DOWNLOAD, settings.ICON2_DEVICE = True, "cpu"
    spec = engine_spec(ModelSpec(kind="hub", path_or_id="org/name"))
    assert spec.allow_download is True and spec.device == "cpu"


def test_a_file_appears_under_its_name_only_when_complete(tmp_path):
    from icon2engine.files import atomic_path, write_atomic

    target = tmp_path / "deep" / "pairs.jsonl"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("the writer died")
    assert not target.exists() and list(target.parent.iterdir()) == []  # nothing half-written is left
    write_atomic(target, "whole\n")
    assert target.read_text() == "whole\n" and [p.name for p in target.parent.iterdir()] == ["pairs.jsonl"]
