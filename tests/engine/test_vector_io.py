from __future__ import annotations

import pytest
import torch

from icon2engine import Dimension, InputError, PromptPair, extract_directions, load_directions, save_directions
from icon2engine.vector_io import export_control_vector_gguf

DIM = Dimension("cheer", (PromptPair("You are a cheerful assistant.", "You are a gloomy assistant."),))


@pytest.fixture
def directions(tiny_lm):
    return extract_directions(tiny_lm, DIM, ["Describe the sea.", "Tell me about a fox.", "What is a dog?", "Numbers 1 2 3."])


def test_a_saved_direction_set_loads_back_identically(directions, tmp_path):
    path = save_directions(directions, tmp_path / "v.safetensors")
    back = load_directions(path)
    torch.testing.assert_close(back.vectors, directions.vectors)
    assert back.dimension == "cheer"
    assert back.model_name == "tiny-llama"
    assert back.prompts_hash == DIM.prompts_hash
    assert back.n_layers == directions.n_layers
    assert back.mean_norm == pytest.approx(directions.mean_norm, rel=1e-6)


def test_the_safetensors_header_carries_the_metadata(directions, tmp_path):
    import json

    from safetensors import safe_open

    path = save_directions(directions, tmp_path / "v.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["icon2"])
    assert {"model", "dimension", "prompts_hash", "n_layers"} <= set(meta)


def test_loading_a_missing_or_foreign_file_says_so(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_directions(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="not a readable"):
        load_directions(junk)


def test_the_control_vector_gguf_is_readable_by_the_gguf_package(directions, tmp_path):
    import gguf

    path = export_control_vector_gguf(directions, tmp_path / "cv.gguf", model_hint="llama")
    reader = gguf.GGUFReader(str(path))
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "controlvector"
    hint = reader.fields["controlvector.model_hint"]
    assert bytes(hint.parts[hint.data[0]]).decode() == "llama"
    names = {t.name: t for t in reader.tensors}
    assert set(names) == {f"direction.{i}" for i in range(1, directions.n_layers)}
    t = names["direction.1"]
    expected = directions.vectors[1] * directions.mean_norm[1]
    torch.testing.assert_close(torch.tensor(t.data.copy()).reshape(-1), expected, atol=1e-5, rtol=1e-5)
