"""Command line: ``python -m icon2engine`` or ``icon2``.

Every command prints a one-line error and exits with status 2 on bad input, never a traceback
(set ICON2_DEBUG=1 to see one).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import Icon2Error
from .formats import FLAG_TRUE
from .judges import JUDGE_ALIASES, JUDGE_KINDS

EPILOG = """\
A first run, on the embedded SmolLM2-135M model (no download needed):

  icon2 presets
  icon2 extract --preset optimism --out vec/optimism.safetensors --gguf vec/optimism.gguf
  icon2 generate --vectors vec/optimism.safetensors --instructions my_instructions.txt \\
                 --gamma-plus 0.05 --gamma-minus -0.03 --layers 8-15 --out pairs.jsonl
  icon2 synthesize --n 1000 --out instructions.jsonl --report synthesis.json
  icon2 filter --vectors vec/optimism.safetensors --instructions instructions.jsonl --out kept.jsonl --scores scores.jsonl
  icon2 calibrate --vectors vec/optimism.safetensors --instructions kept.jsonl --judge vader --layers 8-15 --out calibration.json
  icon2 export --pairs pairs.jsonl --out dataset/
  icon2 train --pairs dataset/ --out runs/optimism --max-steps 32 --max-length 128
  icon2 evaluate --trained runs/optimism --instructions held_out.txt --judge vader --vectors vec/optimism.safetensors --out eval.json
  icon2 pipeline examples/optimism.toml     # all of the above from one file

γ is a fraction of each layer's mean hidden-state norm (0.05 is a good start; ≥ 0.2 degrades text).
"""


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="embedded", help="'embedded' (default), a model directory, a .gguf file or a hub id")
    p.add_argument("--layers-attr", default=None, help="dotted path to the decoder blocks if detection fails, e.g. model.layers")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")


def _spec(args):
    from .config import ModelSpec

    from .formats import env_flag

    return ModelSpec(source=args.model, layers_attr=args.layers_attr, device=args.device,
                     allow_download=env_flag("ICON2_ALLOW_DOWNLOAD"))


def _dimension(args):
    from .config import Dimension, PromptPair
    from .presets import get_preset

    if args.preset:
        return get_preset(args.preset)
    if args.positive or args.negative:
        if len(args.positive) != len(args.negative):
            raise Icon2Error("give the same number of --positive and --negative prompts (they form pairs)")
        return Dimension(name=args.name or "custom", prompt_pairs=tuple(PromptPair(p, n) for p, n in zip(args.positive, args.negative)))
    raise Icon2Error("say which dimension: --preset NAME, or --positive TEXT --negative TEXT (repeatable)")


def cmd_presets(args) -> int:
    from .presets import get_preset, preset_names

    for key in preset_names():
        d = get_preset(key)
        print(f"{key:14s} {len(d.prompt_pairs)} pair(s)  {d.description}")
    return 0


def cmd_extract(args) -> int:
    from .config import ExtractConfig
    from .directions import extract_directions
    from .instructions_io import read_instructions
    from .models import load_model
    from .presets import default_feature_instructions
    from .progress import TqdmProgress
    from .vector_io import export_control_vector_gguf, save_directions

    dim = _dimension(args)
    feats = read_instructions(args.instructions) if args.instructions else default_feature_instructions()
    lm = load_model(_spec(args))
    ds = extract_directions(lm, dim, feats, ExtractConfig(batch_size=args.batch_size), progress=TqdmProgress())
    path = save_directions(ds, args.out)
    print(f"saved {ds.n_layers} direction vectors for {dim.name!r} ({ds.n_pairs} pairs) to {path}")
    if args.gguf:
        export_control_vector_gguf(ds, args.gguf, getattr(lm.model.config, "model_type", "llama"))
        print(f"llama.cpp control vector: {args.gguf}")
    best = max(ds.diagnostics(), key=lambda r: (r["separation_accuracy"] or 0, r["explained_variance"] or 0))
    print(f"best separating layer: {best['layer']} (held-out accuracy {best['separation_accuracy']})")
    return 0


def cmd_generate(args) -> int:
    from .config import GenerateConfig, SteeringConfig
    from .gate import GateConfig, drop_summary, generate_gated_pairs
    from .instructions_io import read_instructions
    from .models import load_model
    from .pipeline import parse_layers
    from .progress import TqdmProgress
    from .vector_io import load_directions

    # Settings first: a bad γ is reported before anything slow happens.
    steering = SteeringConfig(args.gamma_plus, args.gamma_minus, parse_layers(args.layers), args.steer_prompt,
                              mode=args.steering_mode)
    gen = GenerateConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, do_sample=args.sample,
                         temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                         no_repeat_ngram_size=args.no_repeat_ngram_size, repetition_penalty=args.repetition_penalty)
    gate = GateConfig(enabled=not args.no_gate, max_retries=args.max_retries)
    if len(args.vectors) > 1:
        raise Icon2Error("generate takes one --vectors file; run it once per dimension")
    sets = [load_directions(p) for p in args.vectors]
    instructions = read_instructions(args.instructions)
    lm = load_model(_spec(args))
    result = generate_gated_pairs(lm, sets[0], instructions, steering=steering, config=gen, gate=gate,
                                  progress=TqdmProgress())
    pairs = result.pairs
    if not pairs:
        raise Icon2Error(
            f"no pair passed the quality gate ({drop_summary(0, result.dropped_counts)}); "
            + ("the sides came out the same: use a larger |γ|" if "identical sides" in result.dropped_counts
               else f"use a smaller |γ| (e.g. --gamma-plus {args.gamma_plus / 2:g} --gamma-minus {args.gamma_minus / 2:g}) "
                    "or --steering-mode clamp")
        )
    from .files import atomic_path

    out = Path(args.out)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(json.dumps(dict(p.as_dict(), model=lm.name, model_revision=lm.revision), ensure_ascii=False) + "\n")
    print(f"wrote {len(pairs)} pairs to {out}: {drop_summary(len(pairs), result.dropped_counts, result.retries)}")
    return 0


def cmd_export(args) -> int:
    from .errors import InputError
    from .export import export_dataset, read_pairs_jsonl

    rows = read_pairs_jsonl(args.pairs)
    if not rows:
        raise InputError(f"{args.pairs} holds no pairs")
    paths = export_dataset(rows, args.out, model=rows[0].get("model", "unknown"),
                           model_revision=rows[0].get("model_revision", "unknown"), name=args.name)
    for kind, path in paths.items():
        print(f"{kind:8s} {path}")
    return 0


def _floats(value: str | None, flag: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise Icon2Error(f"{flag}: cannot read {value!r}; write comma-separated numbers, e.g. 0.02,0.05,0.1") from None


def _write_jsonl(path: str, rows: list[dict]) -> Path:
    from .files import write_atomic

    return write_atomic(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def cmd_synthesize(args) -> int:
    from .cleaning import CleaningRules
    from .models import load_model
    from .files import write_atomic
    from .progress import TqdmProgress
    from .synthesis import SynthesisConfig, synthesize

    config = SynthesisConfig(max_attempts=args.max_attempts, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                             temperature=args.temperature, top_p=args.top_p, seed=args.seed, system_prompt=args.system_prompt)
    rules = CleaningRules(min_words=args.min_words, max_words=args.max_words)
    lm = load_model(_spec(args))
    result = synthesize(lm, args.n, config, rules, allow_partial=args.allow_partial, progress=TqdmProgress())
    if args.out.endswith(".txt"):
        if any("\n" in t for t in result.instructions):
            raise Icon2Error("some instructions span several lines; write them to a .jsonl file instead of .txt")
        write_atomic(Path(args.out), "".join(t + "\n" for t in result.instructions))
    else:
        _write_jsonl(args.out, [{"instruction": t} for t in result.instructions])
    if args.report:
        write_atomic(Path(args.report), json.dumps(result.report.as_dict(), indent=2, ensure_ascii=False))
    print(result.report.summary())
    print(f"wrote {len(result.instructions)} instructions to {args.out}")
    return 0


def cmd_filter(args) -> int:
    from .filtering import FilterConfig, score_instructions, select_top
    from .instructions_io import read_instructions
    from .models import load_model
    from .pipeline import parse_layers
    from .progress import TqdmProgress
    from .vector_io import load_directions

    keep = None if args.threshold is not None else args.keep_fraction
    config = FilterConfig(method=args.method, keep_fraction=keep, threshold=args.threshold, layers=parse_layers(args.layers),
                          chat_template=not args.bare_text, batch_size=args.batch_size)
    sets = [load_directions(p) for p in args.vectors]
    instructions = read_instructions(args.instructions, column=args.column)
    lm = load_model(_spec(args))
    scores = score_instructions(lm, sets, instructions, config, progress=TqdmProgress())
    selection = select_top(scores, keep_fraction=config.keep_fraction, threshold=config.threshold)
    if args.scores:
        _write_jsonl(args.scores, scores.rows())
    _write_jsonl(args.out, selection.as_rows())
    print(f"kept {len(selection.instructions)} of {len(instructions)} instructions (score ≥ {selection.threshold:.4f}, "
          f"method {config.method}) → {args.out}")
    return 0


def cmd_calibrate(args) -> int:
    from .calibration import CalibrationConfig, calibrate
    from .instructions_io import read_instructions
    from .judges import make_judge
    from .models import load_model
    from .files import write_atomic
    from .pipeline import parse_layers
    from .progress import TqdmProgress
    from .vector_io import load_directions

    grid = {}
    for key, flag in (("gamma_plus_grid", "--gamma-plus-grid"), ("gamma_minus_grid", "--gamma-minus-grid")):
        value = _floats(getattr(args, key), flag)
        if value is not None:
            grid[key] = value
    config = CalibrationConfig(**grid, n_instructions=args.n, p_threshold=args.p_threshold, layers=parse_layers(args.layers),
                               max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed,
                               max_loglik_drop=args.max_loglik_drop if args.max_loglik_drop > 0 else None)
    judge_config = _judge_config(args)
    judge = None if judge_config.kind == "self" else make_judge(judge_config)  # fail before the slow load
    ds = load_directions(args.vectors)
    instructions = read_instructions(args.instructions, column=args.column)
    lm = load_model(_spec(args))
    judge = judge or make_judge(judge_config, lm=lm)
    result = calibrate(lm, ds, instructions, judge, config, progress=TqdmProgress())
    write_atomic(Path(args.out), json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    print(result.format_table())
    print(f"baseline (unsteered): {result.baseline}")
    if result.pick is None:
        raise Icon2Error(f"no γ picked: {result.reason} (table saved to {args.out})")
    print(f"pick: gamma_plus={result.pick['gamma_plus']} gamma_minus={result.pick['gamma_minus']} — {result.reason}")
    return 0


def _read_pairs(path: str) -> list[dict]:
    from .export import read_pairs_jsonl

    p = Path(path)
    return read_pairs_jsonl(p / "pairs.jsonl" if p.is_dir() else p)


def cmd_train(args) -> int:
    from .models import load_model
    from .progress import TqdmProgress
    from .training import TrainConfig, train_dpo

    # Settings and data first: bad values are reported before the model loads.
    config = TrainConfig(method=args.method, beta=args.beta, learning_rate=args.lr, epochs=args.epochs,
                         max_steps=args.max_steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
                         max_length=args.max_length, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                         save_steps=args.save_steps, bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing,
                         seed=args.seed)
    rows = _read_pairs(args.pairs)
    lm = load_model(_spec(args))
    res = train_dpo(lm, rows, args.out, config, dataset_name=args.dataset_name or str(args.pairs),
                    resume=not args.restart, progress=TqdmProgress())
    if res.stopped:
        print(f"stopped after {res.steps} steps; checkpoint kept at {res.checkpoint} (run again to resume)")
        return 3
    last = res.log[-1] if res.log else {}
    print(f"trained {res.steps} steps in {res.stats.wall_s:.0f}s; last loss {last.get('loss', float('nan')):.4f} "
          f"accuracy {last.get('accuracy', float('nan')):.2f}; saved to {res.model_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from .config import SteeringConfig
    from .evaluation import EvalConfig, evaluate
    from .instructions_io import read_instructions
    from .judges import make_judge
    from .models import load_model
    from .files import write_atomic
    from .pipeline import parse_layers
    from .progress import TqdmProgress
    from .training import load_trained
    from .vector_io import load_directions

    config = EvalConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, layers=parse_layers(args.layers))
    steering = SteeringConfig(args.gamma_plus, SteeringConfig().gamma_minus, parse_layers(args.steer_layers)) if args.gamma_plus else None
    judge_config = _judge_config(args)
    judge = None if judge_config.kind == "self" else make_judge(judge_config)  # fail before the slow load
    direction = load_directions(args.vectors) if args.vectors else None
    instructions = read_instructions(args.instructions, column=args.column)
    base = load_model(_spec(args))
    judge = judge or make_judge(judge_config, lm=base)
    trained = load_trained(base, args.trained)
    rep = evaluate(base, trained, instructions, judge, config, direction=direction, steering=steering,
                   progress=TqdmProgress())
    write_atomic(Path(args.out), json.dumps({**rep.summary(), "rows": rep.rows}, indent=2, ensure_ascii=False))
    print(f"trained vs base on {rep.n} instructions ({rep.judge}, both orders): {rep.wins} wins, {rep.ties} ties, "
          f"{rep.losses} losses; win rate {rep.win_rate:.2f} (ties count half), "
          f"{config.confidence:.0%} interval [{rep.ci_low:.2f}, {rep.ci_high:.2f}]")
    print("mean score: " + ", ".join(f"{k} {v:.3f}" for k, v in rep.mean_score.items()))
    if rep.projection:
        print("mean projection onto the direction: " + ", ".join(f"{k} {v:.2f}" for k, v in rep.projection.items()))
    print(f"report: {args.out}")
    return 0


def _judge_config(args):
    from .judges import JudgeConfig

    return JudgeConfig(kind=args.judge, path=args.judge_path, base_url=args.judge_url, model=args.judge_model,
                       api_key_env=args.judge_key_env, criterion=args.criterion, better=args.judge_better,
                       target=args.judge_target, protocol=args.judge_protocol)


def _judge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", default="lexicon", choices=[*JUDGE_KINDS, *JUDGE_ALIASES],
                   help="lexicon (VADER; also: vader), length, formality, reward_model, llm or self (the model itself)")
    p.add_argument("--judge-path", help="reward_model: local model folder")
    p.add_argument("--judge-url", help="llm: OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    p.add_argument("--judge-model", help="llm: model name")
    p.add_argument("--judge-key-env", default="ICON2_JUDGE_API_KEY", help="llm: environment variable holding the API key")
    p.add_argument("--judge-better", default="higher", choices=["higher", "lower"],
                   help="which scores are better (lower: e.g. --judge length for a 'concise' dimension)")
    p.add_argument("--judge-target", type=float, help="a score to aim for: nearer is better (overrides --judge-better)")
    p.add_argument("--criterion", default="helpful, honest and harmless", help="llm: what 'better' means")
    p.add_argument("--judge-protocol", default="pairwise", choices=["pairwise", "scores"],
                   help="llm: pairwise (A, B or tie) or scores (rate each response 1-10; for small judge models)")


def cmd_audit(args) -> int:
    from .audit import audit_verdict, direction_overlap, orthogonalise, pair_gaps, reference_bank, reference_directions
    from .judges import make_judge
    from .models import load_model
    from .files import write_atomic
    from .pipeline import parse_layers
    from .progress import TqdmProgress
    from .vector_io import load_directions, save_directions

    judge_config = _judge_config(args)
    judge = None if judge_config.kind == "self" or not args.pairs else make_judge(judge_config)  # fail before the slow load
    ds = load_directions(args.vectors)
    pairs = _read_pairs(args.pairs) if args.pairs else []
    lm = load_model(_spec(args))
    if args.pairs and judge is None:
        judge = make_judge(judge_config, lm=lm)
    refs = reference_directions(lm, cache_dir=args.cache_dir, progress=TqdmProgress())
    names = {r.key: r.name for r in reference_bank()}
    layers = parse_layers(args.layers)
    overlap = direction_overlap(ds, refs, layers)
    measure = {"lexicon": "sentiment", "vader": "sentiment", "length": "length", "formality": "formality"}.get(judge_config.kind)
    gaps = pair_gaps([{"instruction": p["prompt"][0]["content"] if "prompt" in p and isinstance(p["prompt"], list)
                       else p.get("instruction", p.get("prompt", "")), "chosen": _text(p["chosen"]), "rejected": _text(p["rejected"])}
                      for p in pairs], judge=judge, judge_measure=measure) if pairs else None
    report = {"dimension": ds.dimension, "overlap": overlap, "pairs": gaps,
              "verdict": audit_verdict(ds.dimension, overlap, gaps, names)}
    if args.orthogonalise:
        keys = [k.strip() for k in args.orthogonalise.split(",") if k.strip()]
        cleaned = orthogonalise(ds, refs, keys)
        path = save_directions(cleaned, args.orthogonalised_out or Path(args.vectors).with_suffix(".orth.safetensors"))
        report["orthogonalised"] = {"against": keys, "path": str(path), "overlap": direction_overlap(cleaned, refs, layers)}
    print(report["verdict"])
    print("overlap over layers {}–{}: ".format(overlap["layers"][0], overlap["layers"][-1])
          + ", ".join(f"{names[k]} {v:+.2f}" for k, v in overlap["cosines"].items())
          + f"; explained by all references together {overlap['explained']:.0%}")
    if gaps:
        print("chosen − rejected: " + ", ".join(f"{k} {v['mean']:+.3f}" for k, v in gaps["gaps"].items()))
    if "orthogonalised" in report:
        after = report["orthogonalised"]["overlap"]["cosines"]
        print(f"orthogonalised direction: {report['orthogonalised']['path']} ("
              + ", ".join(f"{names[k]} {v:+.2f}" for k, v in after.items()) + ")")
    if args.out:
        write_atomic(Path(args.out), json.dumps(report, indent=2, ensure_ascii=False))
        print(f"report: {args.out}")
    return 0


def _text(value) -> str:
    """A pair side as plain text: a string, or TRL's conversational [{"role", "content"}]."""
    if isinstance(value, list):
        return " ".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return str(value)


def cmd_pipeline(args) -> int:
    from .pipeline import load_pipeline_config, run_pipeline
    from .progress import TqdmProgress

    summary = run_pipeline(load_pipeline_config(args.config), progress=TqdmProgress())
    print(f"done: {summary['output']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icon2",
        description="Icon² engine: extract direction vectors, synthesise and filter instructions, calibrate γ and generate steered preference pairs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("presets", help="list the ready-made dimensions (the paper's four criteria and more)")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("extract", help="extract one direction vector per layer for a dimension")
    _model_args(p)
    p.add_argument("--preset", help="a preset dimension (see 'icon2 presets')")
    p.add_argument("--name", help="name of a custom dimension")
    p.add_argument("--positive", action="append", default=[], help="positive system prompt (repeat for several pairs)")
    p.add_argument("--negative", action="append", default=[], help="negative system prompt (same count as --positive)")
    p.add_argument("--instructions", help="feature instructions (.txt/.jsonl/.csv); default: 48 built-in everyday ones")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--gguf", help="also write a llama.cpp control vector (.gguf)")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("generate", help="generate chosen (+γ⁺) and rejected (γ⁻) responses per instruction")
    _model_args(p)
    p.add_argument("--vectors", action="append", required=True, help="direction file from 'icon2 extract'")
    p.add_argument("--instructions", required=True, help="instructions (.txt one per line, .jsonl, .csv)")
    p.add_argument("--gamma-plus", type=float, default=0.05, help="chosen side, fraction of layer norm (default 0.05)")
    p.add_argument("--gamma-minus", type=float, default=-0.03, help="rejected side, fraction of layer norm (default -0.03)")
    p.add_argument("--layers", default=None, help="blocks to steer, e.g. 8-15 (default: the middle third)")
    p.add_argument("--steer-prompt", action="store_true", help="also steer the prompt tokens")
    p.add_argument("--steering-mode", default="add", choices=["add", "add_renorm", "clamp"],
                   help="how the vector is applied (default add; bench/pair_quality.py compares them)")
    p.add_argument("--no-repeat-ngram-size", type=int, default=3, help="decoding safeguard on both sides (0 = off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="decoding safeguard on both sides (1 = off)")
    p.add_argument("--no-gate", action="store_true", help="keep every pair as generated (no quality gate)")
    p.add_argument("--max-retries", type=int, default=2, help="regenerations of a degenerate side at a smaller |γ|")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32, help="rows per batch (a pair is two rows)")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .jsonl of pairs")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("synthesize", help="let the model write instructions itself (Magpie), cleaned and de-duplicated")
    _model_args(p)
    p.add_argument("--n", type=int, required=True, help="how many clean instructions to keep")
    p.add_argument("--max-attempts", type=int, default=None, help="samples to draw at most (default 4 × --n)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--system-prompt", default=None, help="system prompt for the pre-query (default: the template's own)")
    p.add_argument("--min-words", type=int, default=3)
    p.add_argument("--max-words", type=int, default=60)
    p.add_argument("--allow-partial", action="store_true", help="write what was kept when attempts run out (default: error)")
    p.add_argument("--out", required=True, help="output .jsonl (or .txt, one per line)")
    p.add_argument("--report", help="also write the drop report as .json")
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("filter", help="score instructions by consistency with the directions and keep the top share")
    _model_args(p)
    p.add_argument("--vectors", action="append", required=True, help="direction file (repeat for several dimensions)")
    p.add_argument("--instructions", required=True, help="instructions (.txt, .jsonl, .csv)")
    p.add_argument("--column", default=None, help="CSV column / JSON field holding the instruction")
    p.add_argument("--keep-fraction", type=float, default=0.1, help="keep this top share (default 0.1)")
    p.add_argument("--threshold", type=float, default=None, help="or keep every score ≥ this")
    p.add_argument("--method", default="centred", choices=["centred", "paper"], help="score (default centred)")
    p.add_argument("--layers", default=None, help="layers to average over (default: all, as in the paper)")
    p.add_argument("--bare-text", action="store_true", help="score the bare instruction, not the chat-formatted user turn")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True, help="kept instructions, best first (.jsonl)")
    p.add_argument("--scores", help="every instruction's scores (.jsonl), for a histogram or a later threshold")
    p.set_defaults(func=cmd_filter)

    p = sub.add_parser("calibrate", help="sweep γ⁺ × γ⁻ on a sample, score with a judge, pick γ (paper, App. J)")
    _model_args(p)
    p.add_argument("--vectors", required=True, help="direction file from 'icon2 extract'")
    p.add_argument("--instructions", required=True, help="instructions to sample from (.txt, .jsonl, .csv)")
    p.add_argument("--column", default=None)
    _judge_args(p)
    p.add_argument("--gamma-plus-grid", default=None, help="e.g. 0.02,0.05,0.1,0.15 (default)")
    p.add_argument("--gamma-minus-grid", default=None, help="write it with =: --gamma-minus-grid=-0.02,-0.05,-0.1,-0.15 (default)")
    p.add_argument("--n", type=int, default=100, help="instructions to sample (default 100)")
    p.add_argument("--p-threshold", type=float, default=0.9)
    p.add_argument("--max-loglik-drop", type=float, default=1.5, help="coherence floor in nats/token below unsteered (0: off)")
    p.add_argument("--layers", default=None, help="blocks to steer, e.g. 8-15 (default: the middle third)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="the whole table and the pick (.json)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("export", help="write pairs as a TRL preference dataset (JSONL + Parquet + card)")
    p.add_argument("--pairs", required=True, help="pairs .jsonl from 'icon2 generate'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default="Icon² preference pairs", help="dataset name for the card")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="DPO on the pairs with TRL (LoRA by default); resumes from the last checkpoint")
    _model_args(p)
    p.add_argument("--pairs", required=True, help="pairs .jsonl from 'icon2 generate', or an exported dataset (folder or .jsonl)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/, adapter/ or model/, train_log.jsonl, README.md")
    p.add_argument("--method", default="lora", choices=["lora", "full"])
    p.add_argument("--beta", type=float, default=0.1, help="DPO β (paper: 0.1)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (LoRA on CPU: 1e-4; paper, full fine-tune: 5e-7)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after N optimiser steps (-1: run the epochs)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--max-length", type=int, default=256, help="prompt + response tokens")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--save-steps", type=int, default=20)
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPUs)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="less memory, slower (GPUs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset-name", default=None, help="name of the dataset for the model card")
    p.add_argument("--restart", action="store_true", help="ignore existing checkpoints and start over")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="trained vs base on held-out instructions: win rate (both orders) and projection")
    _model_args(p)
    p.add_argument("--trained", required=True, help="run folder from 'icon2 train'")
    p.add_argument("--instructions", required=True, help="held-out instructions (.txt, .jsonl, .csv)")
    p.add_argument("--column", default=None)
    _judge_args(p)
    p.add_argument("--vectors", help="direction file: also report the mean projection onto it")
    p.add_argument("--gamma-plus", type=float, default=0.0, help="with --vectors: also score the steered base at this γ⁺")
    p.add_argument("--steer-layers", default=None, help="blocks to steer for the steered base, e.g. 8-15")
    p.add_argument("--layers", default=None, help="blocks averaged for the projection (default: the middle third)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True, help="report .json (summary and every response)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("audit", help="bias audit: a direction's overlap with reference directions, and what its pairs differ in")
    _model_args(p)
    p.add_argument("--vectors", required=True, help="direction file from 'icon2 extract'")
    p.add_argument("--pairs", help="pairs .jsonl from 'icon2 generate' (or an exported dataset) to measure the side gaps of")
    p.add_argument("--layers", help="the steered band, e.g. 10-19 (default: the middle third)")
    p.add_argument("--cache-dir", default=None, help="folder caching the reference directions per model")
    p.add_argument("--orthogonalise", help="comma-separated references to project out of the direction, e.g. sentiment,length")
    p.add_argument("--orthogonalised-out", help="where to write the orthogonalised direction (default: beside --vectors)")
    p.add_argument("--out", help="write the whole audit as JSON here")
    _judge_args(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("pipeline", help="run the stages from one .toml/.yaml config file")
    p.add_argument("config")
    p.set_defaults(func=cmd_pipeline)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (Icon2Error, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        if os.environ.get("ICON2_DEBUG", "").strip().lower() in FLAG_TRUE:
            raise
        print(f"icon2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
