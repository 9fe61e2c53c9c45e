"""Write a preference dataset in TRL's conversational format (JSONL + Parquet) with a dataset card."""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .errors import InputError
from .files import atomic_path
from .formats import prompt_id, trl_row
from .generation import SteeredPair
from .quality import quality_columns

__all__ = ["pair_record", "export_dataset", "read_pairs_jsonl", "prompt_id"]


def pair_record(pair: SteeredPair | Mapping, *, model: str, model_revision: str, extra: Mapping | None = None) -> dict:
    """One row: ``prompt``/``chosen``/``rejected`` as message lists plus provenance columns."""
    p = pair.as_dict() if isinstance(pair, SteeredPair) else dict(pair)
    row = trl_row(
        p["instruction"], p["chosen"], p["rejected"],
        dimension=p["dimension"],
        gamma_plus=float(p["gamma_plus"]),
        gamma_minus=float(p["gamma_minus"]),
        layers=[int(x) for x in p["layers"]],
        model=model,
        model_revision=model_revision,
        seed=int(p["seed"]),
    )
    for key in ("steering_mode", "no_repeat_ngram_size", "repetition_penalty"):  # decoding provenance
        if key in p:
            row[key] = p[key]
    row.update(quality_columns(p.get("quality")))
    if p.get("retries") is not None:
        row["retries"] = len(p["retries"])
    row.update(extra or {})
    return row


def read_pairs_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read pairs written by ``icon2 generate`` (one SteeredPair dict per line)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"pairs file {path} does not exist; run 'icon2 generate' first")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}, line {n}: not valid JSON ({exc.msg})") from None
    return rows


def _card(rows: Sequence[dict], *, name: str, model: str, model_revision: str, notes: str) -> str:
    dims = sorted({r["dimension"] for r in rows})
    gp = sorted({r["gamma_plus"] for r in rows})
    gm = sorted({r["gamma_minus"] for r in rows})
    layers = sorted({tuple(r["layers"]) for r in rows})
    date = _dt.date.today().isoformat()
    return f"""---
license: other
task_categories: [text-generation]
tags: [dpo, preference, icon2, representation-engineering]
---

# {name}

Preference pairs made with **Icon² Studio** on {date}, following Icon² (Chen et al., EMNLP 2025,
arXiv 2509.05605): the model's own hidden states were steered along a direction vector extracted
from contrastive system prompts, upwards (γ⁺) for the chosen response and downwards (γ⁻) for the
rejected one, in the same batch.

| | |
|---|---|
| pairs | {len(rows)} |
| model | `{model}` (revision `{model_revision}`) |
| dimensions | {", ".join(dims)} |
| γ⁺ (fraction of each layer's mean hidden-state norm) | {", ".join(str(x) for x in gp)} |
| γ⁻ | {", ".join(str(x) for x in gm)} |
| steered decoder blocks | {"; ".join(f"{l[0]}–{l[-1]}" for l in layers)} |

## Format

TRL conversational preference format: `prompt`, `chosen` and `rejected` are lists of
`{{"role", "content"}}` messages; load with `datasets.load_dataset("json", data_files="pairs.jsonl")`
or the Parquet file. The prompt is the plain instruction: the contrastive system prompts used to
extract the direction are never part of the data.

Provenance columns: `prompt_id` (SHA-256 of the prompt text), `dimension`, `gamma_plus`,
`gamma_minus`, `layers`, `model`, `model_revision`, `seed`; `steering_mode`, `no_repeat_ngram_size`
and `repetition_penalty` (the steering rule and the decoding safeguards, the same on both sides).

Quality columns (when the pairs went through the quality gate, measured against the unsteered
answer to the same instruction): `chosen_*` and `rejected_*` for `words`, `repetition` (share of
repeated word 3-grams), `distinct2`, `length_ratio`, `foreign` (share of words in another script
or language), `loglik` and `loglik_drop` (per token, under the unsteered model); `retries` (how
often a degenerate side was regenerated at a smaller |γ|).

## Caveats

Pairs are machine-made. Steering can degrade fluency on the rejected side (repetition) and,
at large γ, on both; review a sample before training.
{notes}
"""


def _write_atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(str(tmp))


def export_dataset(
    pairs: Iterable[SteeredPair | Mapping],
    out_dir: str | os.PathLike,
    *,
    model: str,
    model_revision: str,
    name: str = "Icon² preference pairs",
    notes: str = "",
    extra_columns: Sequence[Mapping] | None = None,
) -> dict[str, Path]:
    """Write ``pairs.jsonl``, ``pairs.parquet`` and ``README.md`` (the dataset card) to ``out_dir``.

    Each file is written to a temporary name and renamed, so a failure never leaves a
    half-written file under the final name.

    Returns:
        ``{"jsonl": path, "parquet": path, "card": path}``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    pairs = list(pairs)
    if not pairs:
        raise InputError("no pairs to export; generate some first")
    extra_columns = list(extra_columns) if extra_columns is not None else [{}] * len(pairs)
    rows = [pair_record(p, model=model, model_revision=model_revision, extra=x) for p, x in zip(pairs, extra_columns)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"jsonl": out / "pairs.jsonl", "parquet": out / "pairs.parquet", "card": out / "README.md"}

    def write_jsonl(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")

    _write_atomic(paths["jsonl"], write_jsonl)
    _write_atomic(paths["parquet"], lambda tmp: pq.write_table(pa.Table.from_pylist(rows), tmp))
    card = _card(rows, name=name, model=model, model_revision=model_revision, notes=notes)
    _write_atomic(paths["card"], lambda tmp: Path(tmp).write_text(card, encoding="utf-8"))
    return paths
