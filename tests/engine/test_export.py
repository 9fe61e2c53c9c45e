from __future__ import annotations

import hashlib

import pytest

from icon2engine import InputError, SteeredPair, export_dataset

PAIRS = [
    SteeredPair("Describe the sea.", "A bright, happy sea!", "A grey, cold sea.", "optimism", 0.05, -0.05, (8, 9), 0),
    SteeredPair("Tell me about a fox.", "A playful fox.", "A hungry fox.", "optimism", 0.05, -0.05, (8, 9), 0),
]


def test_the_dataset_loads_with_datasets_in_trl_conversational_format(tmp_path):
    from datasets import load_dataset

    paths = export_dataset(PAIRS, tmp_path, model="SmolLM2-135M-Instruct", model_revision="sha256:abc")
    for kind in ("json", "parquet"):
        ds = load_dataset(kind, data_files=str(paths["jsonl" if kind == "json" else "parquet"]), split="train")
        assert len(ds) == 2
        row = ds[0]
        assert row["prompt"] == [{"role": "user", "content": "Describe the sea."}]
        assert row["chosen"] == [{"role": "assistant", "content": "A bright, happy sea!"}]
        assert row["rejected"] == [{"role": "assistant", "content": "A grey, cold sea."}]
        assert row["prompt_id"] == hashlib.sha256(b"Describe the sea.").hexdigest()
        assert (row["dimension"], row["gamma_plus"], row["gamma_minus"], row["layers"]) == ("optimism", 0.05, -0.05, [8, 9])
        assert (row["model"], row["model_revision"], row["seed"]) == ("SmolLM2-135M-Instruct", "sha256:abc", 0)


def test_the_dataset_card_says_how_it_was_made(tmp_path):
    paths = export_dataset(PAIRS, tmp_path, model="SmolLM2-135M-Instruct", model_revision="r1", name="Demo pairs")
    card = paths["card"].read_text()
    assert "# Demo pairs" in card and "| pairs | 2 |" in card and "2509.05605" in card and "8–9" in card


def test_exporting_nothing_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(InputError, match="no pairs"):
        export_dataset([], tmp_path / "out", model="m", model_revision="r")
    assert not (tmp_path / "out").exists()


def test_gated_pairs_export_their_quality_measures_and_decoding_provenance(tmp_path):
    import pyarrow.parquet as pq

    from icon2engine.quality import measure_text

    q = {side: measure_text("Describe the sea.", text, reference="The sea is wide.").as_dict()
         for side, text in (("chosen", "A bright, happy sea!"), ("rejected", "A grey, cold sea."))}
    pair = SteeredPair("Describe the sea.", "A bright, happy sea!", "A grey, cold sea.", "optimism", 0.05, -0.03, (8, 9), 0,
                       quality=q, retries=({"side": "rejected", "gamma": -0.05, "reasons": ["repetition"]},),
                       no_repeat_ngram_size=3)
    paths = export_dataset([pair], tmp_path / "ds", model="m", model_revision="r")
    row = pq.read_table(paths["parquet"]).to_pylist()[0]
    assert row["rejected_words"] == 4 and row["chosen_distinct2"] == 1.0 and row["retries"] == 1
    assert row["no_repeat_ngram_size"] == 3 and row["steering_mode"] == "add" and row["repetition_penalty"] == 1.0
    assert "Quality columns" in paths["card"].read_text()
