"""The bias audit (icon2engine.audit): overlap with reference directions, the remedy, and what
the pairs differ in. Structure on constructed vectors and the tiny model; behaviour on the
embedded model (slow)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from icon2engine import audit
from icon2engine.config import Dimension, PromptPair
from icon2engine.directions import DirectionSet
from icon2engine.errors import InputError
from icon2engine.judges import LengthJudge


def _set(name: str, vectors) -> DirectionSet:
    v = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    v = v / v.norm(dim=-1, keepdim=True)
    n = v.shape[0]
    return DirectionSet(dimension=name, vectors=v, mean_norm=[1.0] * n, explained_variance=[1.0] * n,
                        separation_accuracy=[1.0] * n, mean_diff_cosine=[1.0] * n)


def _refs(n_layers=6, hidden=16, seed=0):
    rng = np.random.default_rng(seed)
    return {"sentiment": _set("sentiment", rng.normal(size=(n_layers, hidden))),
            "length": _set("length", rng.normal(size=(n_layers, hidden)))}


def test_the_bank_has_the_five_documented_references():
    keys = [r.key for r in audit.reference_bank()]
    assert keys == ["sentiment", "length", "formality", "refusal", "confidence"]
    for r in audit.reference_bank():
        assert len(r.dimension.prompt_pairs) >= 3 and r.about


def test_overlap_of_a_direction_made_of_a_reference():
    refs = _refs()

    s, ln = refs["sentiment"].vectors.numpy(), refs["length"].vectors.numpy()
    # Orthogonal to both references at every layer, then mixed with sentiment at 0.6.
    rng = np.random.default_rng(1)
    other = rng.normal(size=s.shape)
    for i in range(s.shape[0]):
        q, _ = np.linalg.qr(np.stack([s[i], ln[i]]).T)
        other[i] -= q @ (q.T @ other[i])
        other[i] /= np.linalg.norm(other[i])
    ds = _set("mix", 0.6 * s + 0.8 * other)
    out = audit.direction_overlap(ds, refs, layers=range(6))
    assert out["cosines"]["sentiment"] == pytest.approx(0.6, abs=1e-3)
    assert out["explained"] == pytest.approx(0.36, abs=1e-3)  # 0.6² of the direction lies in the span
    assert out["largest"] == "sentiment" and out["flagged"] == ["sentiment"]
    assert audit.direction_overlap(refs["sentiment"], refs, layers=range(6))["cosines"]["sentiment"] == pytest.approx(1.0, abs=1e-5)


def test_orthogonalise_removes_the_overlap_and_keeps_the_rest():
    refs = _refs()
    s = refs["sentiment"].vectors.numpy()
    rng = np.random.default_rng(2)
    ds = _set("d", 0.7 * s + 0.3 * rng.normal(size=s.shape))
    before = audit.direction_overlap(ds, refs, layers=range(6))["cosines"]["sentiment"]
    cleaned = audit.orthogonalise(ds, refs, ["sentiment"])
    after = audit.direction_overlap(cleaned, refs, layers=range(6))
    assert before > 0.5 and abs(after["cosines"]["sentiment"]) <= 1e-5
    assert torch.allclose(cleaned.vectors.norm(dim=-1), torch.ones(6), atol=1e-5)
    assert cleaned.extra["orthogonalised_against"] == ["sentiment"]
    assert ds.extra == {}  # the original is untouched
    with pytest.raises(InputError, match="entirely"):
        audit.orthogonalise(refs["sentiment"], refs, ["sentiment"])
    with pytest.raises(InputError, match="no reference direction 'tone'"):
        audit.orthogonalise(ds, refs, ["tone"])


def test_mismatched_shapes_are_refused():
    with pytest.raises(InputError, match="same model"):
        audit.direction_overlap(_set("d", np.ones((4, 16))), _refs())


def _pairs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    words = "the river runs past the old mill and the fields lie quiet under a grey sky".split()
    out = []
    for i in range(n):
        long_side = " ".join(rng.choice(words, size=int(rng.integers(25, 40))))
        short_side = " ".join(rng.choice(words, size=int(rng.integers(5, 12))))
        out.append({"instruction": f"Describe place {i}.", "chosen": long_side, "rejected": short_side})
    return out


def test_a_length_judge_is_predicted_by_length_alone_and_flagged():
    pairs = _pairs()
    gaps = audit.pair_gaps(pairs, judge=LengthJudge(), judge_measure="length")
    assert gaps["gaps"]["length"]["mean"] > 0.4 and gaps["gaps"]["length"]["chosen_higher"] == 1.0
    assert gaps["judge"]["prefers_chosen"] == 1.0
    assert gaps["prediction"]["length"] >= 0.95
    assert {"feature": "length", "accuracy": gaps["prediction"]["length"], "expected": True} in gaps["flags"]
    verdict = audit.audit_verdict("Concise", None, gaps)
    assert "length alone predicts the judge's choice" in verdict and "the judge measures that itself" in verdict


def test_a_judge_unrelated_to_the_gaps_is_not_predicted():
    pairs = _pairs(60, seed=3)
    rng = np.random.default_rng(4)
    coin = [float(x) for x in rng.choice([-1.0, 1.0], size=len(pairs))]  # a judge that ignores the text
    gaps = audit.pair_gaps(pairs, preferences=coin)
    assert all(gaps["prediction"][f] < audit.PREDICT_FLAG for f in audit.GAP_FEATURES)
    assert gaps["flags"] == []


def test_too_few_pairs_give_no_prediction_and_no_pairs_is_an_error():
    gaps = audit.pair_gaps(_pairs(4), judge=LengthJudge())
    assert gaps["prediction"]["all"] is None
    with pytest.raises(InputError, match="no pairs"):
        audit.pair_gaps([], judge=LengthJudge())


def test_verdict_names_the_overlap():
    overlap = {"largest": "sentiment", "cosines": {"sentiment": 0.52, "length": 0.1}}
    verdict = audit.audit_verdict("Helpfulness", overlap, None)
    assert verdict.startswith("Helpfulness overlaps Sentiment at 0.52")
    assert "orthogonalise the direction against Sentiment" in verdict  # a flagged overlap names its remedy
    low = {"largest": "length", "cosines": {"sentiment": 0.05, "length": -0.2}}
    assert "overlaps no reference much" in audit.audit_verdict("Cooking", low, None)
    assert "orthogonalise" not in audit.audit_verdict("Cooking", low, None)


def test_reference_directions_are_cached_per_model(tiny_lm, tmp_path, monkeypatch):
    first = audit.reference_directions(tiny_lm, cache_dir=tmp_path, keys=["length"])
    assert first["length"].n_layers == tiny_lm.n_layers
    calls = []
    monkeypatch.setattr(audit, "extract_directions", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(AssertionError))
    again = audit.reference_directions(tiny_lm, cache_dir=tmp_path, keys=["length"])
    assert calls == [] and torch.allclose(again["length"].vectors, first["length"].vectors)
    with pytest.raises(InputError, match="no reference dimension 'tone'"):
        audit.reference_directions(tiny_lm, keys=["tone"])


def test_cli_audit_reports_and_orthogonalises(tiny_dir, tmp_path, capsys):
    from icon2engine.cli import main

    vectors = tmp_path / "dim.safetensors"
    assert main(["extract", "--model", str(tiny_dir), "--name", "d", "--positive", "You are kind.", "--negative", "You are rude.",
                 "--out", str(vectors)]) == 0
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(p) for p in _pairs(12)), encoding="utf-8")
    out = tmp_path / "audit.json"
    assert main(["audit", "--model", str(tiny_dir), "--vectors", str(vectors), "--pairs", str(pairs), "--judge", "length",
                 "--cache-dir", str(tmp_path / "refs"), "--orthogonalise", "sentiment", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["overlap"]["cosines"]) == {"sentiment", "length", "formality", "refusal", "confidence"}
    assert report["pairs"]["pairs"] == 12 and report["verdict"]
    assert abs(report["orthogonalised"]["overlap"]["cosines"]["sentiment"]) <= 1e-4
    assert "overlap over layers" in capsys.readouterr().out


@pytest.mark.slow
def test_embedded_finds_sentiment_in_optimism_not_in_cooking(embedded_lm, tmp_path_factory):
    from icon2engine import default_feature_instructions, extract_directions, get_preset

    refs = audit.reference_directions(embedded_lm, cache_dir=tmp_path_factory.mktemp("refs"), keys=["sentiment"])
    feats = default_feature_instructions()
    optimism = extract_directions(embedded_lm, get_preset("optimism"), feats)
    cooking = extract_directions(embedded_lm, Dimension(name="cooking", prompt_pairs=(
        PromptPair("You always speak about cooking.", "You always speak about sport."),)), feats)
    # A user's sentiment dimension, in wordings of its own (none of the reference's).
    sentiment = extract_directions(embedded_lm, Dimension(name="tone", prompt_pairs=(
        PromptPair("You respond positively.", "You respond negatively."),
        PromptPair("You are a happy, cheerful assistant.", "You are a sad, miserable assistant."),
        PromptPair("Your replies are optimistic and kind.", "Your replies are pessimistic and harsh."))), feats)
    found = audit.direction_overlap(sentiment, refs)
    # 0.73 measured; the reference's own four wordings agree with each other at 0.29-0.62 on this
    # model, which bounds what any other wording can reach (the 0.8 is not met: see docs/guide.md).
    assert found["cosines"]["sentiment"] >= 0.7 and "sentiment" in found["flagged"]
    assert "sentiment" in audit.direction_overlap(optimism, refs)["flagged"]
    unrelated = audit.direction_overlap(cooking, refs)
    assert abs(unrelated["cosines"]["sentiment"]) < audit.OVERLAP_FLAG and unrelated["flagged"] == []
    cleaned = audit.orthogonalise(optimism, refs, ["sentiment"])
    assert abs(audit.direction_overlap(cleaned, refs)["cosines"]["sentiment"]) <= 0.05

    # The orthogonalised direction still makes pairs its own judge (VADER, optimism's) tells apart,
    # and they are prose: the quality gate measures every side against the unsteered answer.
    from icon2engine import GenerateConfig, SteeringConfig
    from icon2engine.gate import generate_gated_pairs
    from icon2engine.judges import VaderJudge

    instructions = ["Describe a rainy Monday morning.", "What do you think about getting older?",
                    "Tell me about moving to a new city.", "How was the weather last winter?",
                    "Write two sentences about a long train journey.", "What is it like to start a new job?"]
    result = generate_gated_pairs(embedded_lm, cleaned, instructions, steering=SteeringConfig(),
                                  config=GenerateConfig(max_new_tokens=48))
    # The gate drops a side that stopped answering (measured: 3 of 6 kept; a chosen side refused once).
    assert len(result.pairs) >= 2, result.dropped_counts
    judge = VaderJudge()
    wins = sum(judge.compare(p.instruction, p.chosen, p.rejected) > 0 for p in result.pairs)
    assert wins / len(result.pairs) >= 0.75, [(p.chosen, p.rejected) for p in result.pairs]
