"""The reviewed dataset as files: JSONL, Parquet (TRL conversational format) and a dataset card."""
from __future__ import annotations

import io
import json

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
    ]
)


def to_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def to_parquet(rows: list[dict]) -> bytes:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def dataset_card(*, run: Run, rows: list[dict], meta: dict) -> str:
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(meta["counts"].items())) or "none"
    dims = sorted({r["dimension"] for r in rows}) or ["—"]
    return f"""---
license: other
tags: [dpo, preference, icon2, representation-engineering]
---
# {run.project.name} / {run.name}

Preference pairs made by steering {run.model.name} along {", ".join(dims)} (Icon², Chen et al., EMNLP 2025):
the chosen response was generated with the direction added (γ⁺), the rejected one with it subtracted (γ⁻).

## Review
{meta["note"]}

- Pairs generated: {meta["total"]}
- Pairs in this dataset: {meta["kept"]}
- Outcomes: {counts}
- Reviews per pair: {run.review_k if run.require_review else "—"}

## Format
TRL conversational preference format: `prompt`, `chosen`, `rejected` are lists of messages.
Provenance columns: `prompt_id` (SHA-256 of the prompt text), `dimension`, `gamma_plus`, `gamma_minus`,
`layers`, `model`, `model_revision`, `seed`. Review columns: `verdict` (confirm, swap — already flipped —
or not_reviewed), `annotators`, `agreement` (share of verdicts agreeing with the majority), `edited`
(a reviewer edited a response; the original is kept in the studio's audit log).
"""
