"""The stages as every caller runs them: the CLI's commands, ``icon2 pipeline`` and the worker.

Each function calls one engine function, writes what the stage makes (atomically, through
:mod:`icon2engine.files`) and raises one clear error when the stage made nothing usable, so a
stage's files and failures read the same whichever way it was started. The worker passes
``out=None`` where its results go to the database instead of a file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import InputError
from .files import write_atomic
from .progress import NullProgress, Progress

__all__ = [
    "write_json", "write_jsonl", "save_direction_files", "extract_stage", "synthesize_stage", "filter_stage",
    "calibrate_stage", "generate_stage", "no_pairs_message", "evaluate_stage",
]


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    return write_atomic(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_json(path: str | Path, value: Any) -> Path:
    return write_atomic(Path(path), json.dumps(value, indent=2, ensure_ascii=False))


def save_direction_files(lm, ds, path: str | Path, gguf: str | Path | None = None) -> tuple[Path, Path | None]:
    """The direction set as safetensors (what the engine loads) and, if asked, a llama.cpp control vector."""
    from .vector_io import export_control_vector_gguf, save_directions

    saved = save_directions(ds, path)
    if gguf is not None:
        gguf = export_control_vector_gguf(ds, gguf, getattr(lm.model.config, "model_type", "llama"))
    return saved, gguf


def extract_stage(lm, dimension, feature_instructions: Sequence[str], config, *, out: str | Path,
                  gguf: str | Path | None = None, progress: Progress | None = None, stats=None):
    """Extract one dimension's directions and save them. Returns ``(directions, path, gguf_path)``."""
    from .directions import extract_directions

    ds = extract_directions(lm, dimension, list(feature_instructions), config, progress=progress or NullProgress(),
                            stats=stats)
    path, gguf_path = save_direction_files(lm, ds, out, gguf)
    return ds, path, gguf_path


def synthesize_stage(lm, n_target: int, config, rules, *, out: str | Path, report: str | Path | None = None,
                     allow_partial: bool = False, progress: Progress | None = None, stats=None):
    """Self-synthesised, cleaned instructions written as ``.jsonl`` (or ``.txt``, one per line)."""
    from .synthesis import synthesize

    result = synthesize(lm, n_target, config, rules, allow_partial=allow_partial, progress=progress or NullProgress(),
                        stats=stats)
    if str(out).endswith(".txt"):
        if any("\n" in t for t in result.instructions):
            raise InputError("some instructions span several lines; write them to a .jsonl file instead of .txt")
        write_atomic(Path(out), "".join(t + "\n" for t in result.instructions))
    else:
        write_jsonl(out, ({"instruction": t} for t in result.instructions))
    if report is not None:
        write_json(report, result.report.as_dict())
    return result


def filter_stage(lm, directions, instructions: Sequence[str], config, *, out: str | Path,
                 scores_out: str | Path | None = None, progress: Progress | None = None, stats=None):
    """Score every instruction against the directions and keep the top share. Returns ``(scores, selection)``."""
    from .filtering import score_instructions, select_top

    scores = score_instructions(lm, directions, instructions, config, progress=progress or NullProgress(), stats=stats)
    selection = select_top(scores, keep_fraction=config.keep_fraction, threshold=config.threshold)
    if scores_out is not None:
        write_jsonl(scores_out, scores.rows())
    write_jsonl(out, selection.as_rows())
    return scores, selection


def calibrate_stage(lm, directions, instructions: Sequence[str], judge, config, *, out: str | Path | None,
                    dimensions: Sequence[str] | None = None, require_pick: bool = True, steering=None, generate=None,
                    gate=None, progress: Progress | None = None, stats=None):
    """Sweep γ⁺ × γ⁻ with the run's own steering rule, safeguards and gate, and pick. The whole
    table is written to ``out`` even when nothing is picked; then, with ``require_pick``, an
    :class:`InputError` says why."""
    from .calibration import calibrate

    result = calibrate(lm, directions, instructions, judge, config, dimensions=dimensions, steering=steering,
                       generate=generate, gate=gate, progress=progress or NullProgress(), stats=stats)
    if out is not None:
        write_json(out, result.as_dict())
    if require_pick and result.pick is None:
        raise InputError(f"calibration picked no γ ({result.reason})" + (f"; the table is in {out}" if out else ""))
    return result


def no_pairs_message(dropped: Mapping[str, int], steering) -> str:
    """Why no pair came through the gate, and what to change."""
    from .gate import drop_summary

    answering = sum(c for r, c in dropped.items() if r.endswith(("off_topic", "refusal", "echo", "circular", "less_relevant")))
    if "identical sides" in dropped:
        hint = "the sides came out the same: use a larger |γ|"
    elif answering * 2 >= sum(dropped.values()):
        hint = (f"the steered sides stopped answering their instructions (off-topic, refusing, or less relevant than the rejected side), even at a smaller |γ|: "
                f"try a smaller γ (e.g. gamma_plus {steering.gamma_plus / 2:g}, gamma_minus {steering.gamma_minus / 2:g}), "
                "another layer band, or the audit's remedy (a direction that carries sentiment or refusal is "
                "orthogonalised against it)")
    else:
        hint = (f"use a smaller |γ| (e.g. gamma_plus {steering.gamma_plus / 2:g}, gamma_minus {steering.gamma_minus / 2:g}) "
                "or the clamp steering mode")
    return f"no pair passed the quality gate ({drop_summary(0, dropped)}); {hint}"


def generate_stage(lm, directions, instructions: Sequence[str], *, steering, config, gate, out: str | Path | None,
                   dimensions: Sequence[str] | None = None, progress: Progress | None = None, stats=None):
    """Steered pairs through the quality gate, written as JSONL rows (with the model's name and
    revision) to ``out``. With a file to write, no pair at all is an error that says what to change;
    the worker (``out=None``) counts an empty chunk instead."""
    from .gate import generate_gated_pairs

    result = generate_gated_pairs(lm, directions, instructions, dimensions=dimensions, steering=steering, config=config,
                                  gate=gate, progress=progress or NullProgress(), stats=stats)
    if out is not None:
        if not result.pairs:
            raise InputError(no_pairs_message(result.dropped_counts, steering))
        write_jsonl(out, (dict(p.as_dict(), model=lm.name, model_revision=lm.revision) for p in result.pairs))
    return result


def evaluate_stage(base, trained, instructions: Sequence[str], judge, config, *, out: str | Path, direction=None,
                   steering=None, progress: Progress | None = None, stats=None):
    """Trained against base on held-out instructions; the summary and every response go to ``out``."""
    from .evaluation import evaluate

    report = evaluate(base, trained, instructions, judge, config, direction=direction, steering=steering,
                      progress=progress or NullProgress(), stats=stats)
    write_json(out, {**report.summary(), "rows": report.rows})
    return report
