"""The reviewed dataset as files: JSONL, Parquet (TRL conversational format) and a dataset card."""
from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from webapp.studio.models import Run

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
SCHEMA = pa.schema(
    [
        ("prompt", _MESSAGES),
        ("chosen", _MESSAGES),
        ("rejected", _MESSAGES),
        ("prompt_id", pa.string()),
        ("pair_id", pa.int64()),
        ("dimension", pa.string()),
        ("gamma_plus", pa.float64()),
        ("gamma_minus", pa.float64()),
        ("layers", pa.list_(pa.int64())),
        ("model", pa.string()),
        ("model_revision", pa.string()),
        ("seed", pa.int64()),
        ("verdict", pa.string()),
        ("annotators", pa.list_(pa.string())),
        ("agreement", pa.float64()),
        ("edited", pa.bool_()),
        ("steering_mode", pa.string()),
        ("pairing", pa.string()),
        ("no_repeat_ngram_size", pa.int64()),
        ("repetition_penalty", pa.float64()),
        ("retries", pa.int64()),
    ]
)


def to_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _schema(extra: list[str]) -> pa.Schema:
    # The per-side quality measures (chosen_repetition, rejected_loglik…) come as the engine wrote them.
    schema = SCHEMA
    for name in sorted(set(extra) - set(SCHEMA.names)):
        schema = schema.append(pa.field(name, pa.int64() if name.endswith("_words") else pa.float64()))
    return schema


def jsonl_stream(batches: Iterable[list[dict]]) -> Iterator[bytes]:
    """JSONL a batch at a time (for a streaming response: memory does not grow with the dataset)."""
    for rows in batches:
        if rows:
            yield to_jsonl(rows)


def parquet_file(batches: Iterable[list[dict]], columns: list[str], out: BinaryIO | None = None) -> BinaryIO:
    """Parquet written a row group per batch into ``out`` (default: a temporary file, rewound for
    a file response), with the quality ``columns`` the whole dataset carries, so every batch has
    one schema."""
    schema = _schema(columns)
    out = out if out is not None else tempfile.TemporaryFile()
    with pq.ParquetWriter(out, schema) as writer:
        wrote = False
        for rows in batches:
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                wrote = True
        if not wrote:
            writer.write_table(schema.empty_table())
    out.seek(0)
    return out


def _gate_section(run: Run) -> str:
    stage = run.stages.filter(kind="generate").first()
    gate = (stage.compute or {}).get("gate") if stage else None
    if not gate:
        return "No quality gate ran for these pairs."
    dropped = gate.get("dropped") or {}
    lines = [
        f"Every response was measured against the unsteered answer (repetition, distinct-2, length, script and "
        f"language, likelihood) and against its instruction (relevance to it, refusals: a refusing side passes only "
        f"where the dimension allows refusing, on the chosen side); a degenerate, off-topic or refusing side was "
        f"regenerated at a smaller |γ| "
        f"({gate.get('retries', 0)} regenerations), and a pair that still failed was dropped.",
        "",
        f"- Pairs kept: {gate.get('kept', 0)}",
        f"- Pairs dropped: {sum(dropped.values())}",
    ]
    lines += [f"  - {reason}: {n}" for reason, n in sorted(dropped.items(), key=lambda kv: -kv[1])]
    lines.append(
        f"- Steering: {run.steering_mode}; decoding safeguards on both sides: no-repeat n-gram "
        f"{run.no_repeat_ngram_size or 'off'}, repetition penalty {run.repetition_penalty:g}"
    )
    return "\n".join(lines)


def _audit_section(run: Run) -> str:
    """The latest bias audit (webapp.jobs.audits), as the Audit tab shows it, in a few lines."""
    from webapp.jobs.audits import audit_latest_done

    done = audit_latest_done(run=run)
    if done is None:
        return "Not audited: the run page's Audit tab compares each direction with reference directions (sentiment, length, formality, refusal, confidence) and measures what the pairs differ in."
    names = {r["key"]: r["name"] for r in done.result.get("references", [])}
    earlier = {d["id"]: d for d in (done.before.result.get("dimensions", []) if done.before_id and done.before else [])}
    lines = [f"Audited {done.finished_at:%Y-%m-%d %H:%M} UTC against {', '.join(names.values())}."]
    for d in done.result.get("dimensions", []):
        cos = d["overlap"]["cosines"]
        top = sorted(cos, key=lambda k: -abs(cos[k]))[:2]
        lines += ["", f"- **{d['name']}**: {d['verdict']}",
                  "  - Overlap (cosine over layers " + f"{d['overlap']['layers'][0]}–{d['overlap']['layers'][-1]}): "
                  + ", ".join(f"{names.get(k, k)} {cos[k]:+.2f}" for k in top)
                  + f"; the references explain {d['overlap']['explained']:.2f} of the direction"]
        if d.get("orthogonalised_against"):
            lines.append(f"  - Orthogonalised against {', '.join(names.get(k, k) for k in d['orthogonalised_against'])} "
                         "before these pairs were generated")
        if d["id"] in earlier:
            lines.append(f"  - Before that: {earlier[d['id']]['verdict']}")
        judge = (d.get("pairs") or {}).get("judge")
        if judge:
            lines.append(f"  - The judge prefers the chosen side in {judge['prefers_chosen']:.0%} of {d['pairs']['pairs']} pairs")
    return "\n".join(lines)


def dataset_card(*, run: Run, meta: dict) -> str:
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(meta["counts"].items())) or "none"
    dims = sorted(meta.get("dimensions") or []) or ["—"]
    gate = _gate_section(run)
    return f"""---
license: other
tags: [dpo, preference, icon2, representation-engineering]
---
# {run.project.name} / {run.name}

Preference pairs made by steering {run.model.name} along {", ".join(dims)} (Icon², Chen et al., EMNLP 2025):
the chosen response was generated with the direction added (γ⁺), the rejected one with it subtracted (γ⁻).

## Quality gate
{gate}

## Bias audit
{_audit_section(run)}

## Judges
- Calibration: {run.calibration_judge_label if run.calibrate else "not calibrated (γ set by hand)"}
- Evaluation (trained against base): {run.eval_judge_label}

## Review
{meta["note"]}

- Pairs generated: {meta["total"]}
- Pairs in this dataset: {meta["kept"]}
- Outcomes: {counts}
- Reviews per pair: {run.review_k if run.require_review else "—"}

## Format
TRL conversational preference format: `prompt`, `chosen`, `rejected` are lists of messages.
Provenance columns: `prompt_id` (SHA-256 of the prompt text), `pair_id` (the studio's id of the pair),
`dimension`, `gamma_plus`, `gamma_minus`,
`layers`, `model`, `model_revision`, `seed`. Review columns: `verdict` (confirm, swap — already flipped —
or not_reviewed), `annotators`, `agreement` (share of verdicts agreeing with the majority), `edited`
(a reviewer edited a response; the original is kept in the studio's audit log).
Quality columns: `chosen_*` and `rejected_*` for `words`, `repetition` (share of repeated word 3-grams),
`distinct2`, `length_ratio` (against the unsteered answer), `foreign` (share of words in another script or
language), `loglik` and `loglik_drop` (per token under the unsteered model); `retries`.
Whether each response answers its instruction (pairs generated before this was measured lack these columns):
- `chosen_relevance`, `rejected_relevance`: nats per token by which the response predicts the instruction
  better than a neutral text does, under the unsteered model; on the embedded model hand-written on-topic
  answers scored about 0.3–1.9, cheerful non-answers and off-topic text mostly below 0 (empty when it could
  not be measured). An echo of the request scores high too: `*_new_content` tells it apart.
- `chosen_relevance_kept`, `rejected_relevance_kept`: that relevance over the unsteered answer's (1 keeps it
  all; empty when the unsteered answer's is unknown or below 0.1, too loosely tied to the request for a ratio).
- `chosen_refusal`, `rejected_refusal`: 1.0 when the response declines, disclaims its ability or apologises
  instead of answering, else 0.0.
- `chosen_content_repetition`, `rejected_content_repetition`: the share of the first 40 content words that
  repeat an earlier one; the embedded model's own answers stay at or under about 0.38, a side that circles
  round a few words and says nothing scores more (empty for fewer than 8 content words).

Steering and decoding provenance: `steering_mode`, `pairing` (which sides were steered: `two_sided`,
`unsteered_chosen` or `unsteered_rejected`), `no_repeat_ngram_size`, `repetition_penalty`.
"""
