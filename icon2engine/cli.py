"""Command line: ``python -m icon2engine`` or ``icon2``.

Every command prints a one-line error and exits with status 2 on bad input, never a traceback
(set ICON2_DEBUG=1 to see one). Each command's settings are flags generated from its config
dataclasses (:mod:`icon2engine.arguments`); the commands and ``icon2 pipeline`` run the same
stage functions (:mod:`icon2engine.stages`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .arguments import ConfigArgumentParser, config_from_args
from .config import (
    CalibrationConfig, EvalConfig, ExtractConfig, FilterConfig, GateConfig, GenerateConfig, SteeringConfig, SynthesisConfig,
    TrainConfig, STEERING_MODES,
)
from .cleaning import CleaningRules
from .errors import Icon2Error
from .formats import FLAG_TRUE
from .judges import JudgeConfig

EPILOG = """\
A first run, on the embedded SmolLM2-135M model (no download needed):

  icon2 presets
  icon2 check                                # or --model my-model/: is it a chat model, with fluent answers?
  icon2 extract --preset optimism --out vec/optimism.safetensors --gguf vec/optimism.gguf
  icon2 generate --vectors vec/optimism.safetensors --instructions my_instructions.txt \\
                 --gamma-plus 0.08 --gamma-minus -0.03 --layers 8-15 --out pairs.jsonl
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


def _judge(args, lm=None):
    """The judge the ``--judge-*`` flags describe. It is built before the model loads, so a bad
    judge fails fast; the model's own judge (``self``) waits for ``lm``."""
    from .judges import make_judge

    config = config_from_args(args, JudgeConfig, prefix="judge")
    if config.kind == "self":
        return None if lm is None else make_judge(config, lm=lm)
    return make_judge(config)


def cmd_presets(args) -> int:
    from .presets import get_preset, preset_names

    for key in preset_names():
        d = get_preset(key)
        print(f"{key:14s} {len(d.prompt_pairs)} pair(s)  {d.description}")
    return 0


def cmd_check(args) -> int:
    from .model_check import check_model_source

    check = check_model_source(_spec(args), max_new_tokens=args.max_new_tokens)
    if args.out:
        Path(args.out).write_text(json.dumps(check.as_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"{check.source}: {check.architecture} ({check.model_type}), blocks at {check.layers_path}: {check.layers} "
          f"layers × {check.hidden_size}, context {check.context_length}")
    print(f"chat template: {'yes' if check.chat_template else 'no'}; system role: {'yes' if check.system_role else 'no'}; "
          f"BOS: {check.bos}")
    for answer in check.answers:
        print(f"  {answer['instruction']!r} -> {answer['text'][:120]!r}{' [' + ', '.join(answer['reasons']) + ']' if answer['reasons'] else ''}")
    for note in check.notes:
        print(f"note: {note}")
    for flag in check.flags:
        print(f"FLAG {flag['code']}: {flag['message']}\n  what to do: {flag['fix']}")
    print("check passed" if check.ok else "check FAILED")
    return 0 if check.ok else 1


def cmd_extract(args) -> int:
    from .instructions_io import read_instructions
    from .models import load_model
    from .presets import default_feature_instructions
    from .progress import TqdmProgress
    from .stages import extract_stage

    dim = _dimension(args)
    config = config_from_args(args, ExtractConfig)
    feats = read_instructions(args.instructions) if args.instructions else default_feature_instructions()
    lm = load_model(_spec(args))
    ds, path, gguf = extract_stage(lm, dim, feats, config, out=args.out, gguf=args.gguf, progress=TqdmProgress())
    print(f"saved {ds.n_layers} direction vectors for {dim.name!r} ({ds.n_pairs} pairs) to {path}")
    if gguf:
        print(f"llama.cpp control vector: {gguf}")
    best = max(ds.diagnostics(), key=lambda r: (r["separation_accuracy"] or 0, r["explained_variance"] or 0))
    print(f"best separating layer: {best['layer']} (held-out accuracy {best['separation_accuracy']})")
    return 0


def cmd_generate(args) -> int:
    from .gate import drop_summary
    from .instructions_io import read_instructions
    from .models import load_model
    from .progress import TqdmProgress
    from .stages import generate_stage
    from .vector_io import load_directions

    # Settings first: a bad γ is reported before anything slow happens.
    steering = config_from_args(args, SteeringConfig)
    config = config_from_args(args, GenerateConfig)
    gate = config_from_args(args, GateConfig)
    if len(args.vectors) > 1:
        raise Icon2Error("generate takes one --vectors file; run it once per dimension")
    directions = load_directions(args.vectors[0])
    instructions = read_instructions(args.instructions)
    lm = load_model(_spec(args))
    result = generate_stage(lm, directions, instructions, steering=steering, config=config, gate=gate, out=args.out,
                            progress=TqdmProgress())
    print(f"wrote {len(result.pairs)} pairs to {args.out}: "
          f"{drop_summary(len(result.pairs), result.dropped_counts, result.retries)}")
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


def cmd_synthesize(args) -> int:
    from .models import load_model
    from .progress import TqdmProgress
    from .stages import synthesize_stage

    config = config_from_args(args, SynthesisConfig)
    rules = config_from_args(args, CleaningRules)
    if not str(args.out).endswith((".txt", ".jsonl")):
        raise Icon2Error(f"--out {args.out}: write the instructions to a .jsonl (or .txt) file")
    lm = load_model(_spec(args))
    result = synthesize_stage(lm, args.n, config, rules, out=args.out, report=args.report,
                              allow_partial=args.allow_partial, progress=TqdmProgress())
    print(result.report.summary())
    print(f"wrote {len(result.instructions)} instructions to {args.out}")
    return 0


def cmd_filter(args) -> int:
    from .instructions_io import read_instructions
    from .models import load_model
    from .progress import TqdmProgress
    from .stages import filter_stage
    from .vector_io import load_directions

    # --threshold replaces the top share
    config = config_from_args(args, FilterConfig, **({"keep_fraction": None} if args.threshold is not None else {}))
    sets = [load_directions(p) for p in args.vectors]
    instructions = read_instructions(args.instructions, column=args.column)
    lm = load_model(_spec(args))
    _, selection = filter_stage(lm, sets, instructions, config, out=args.out, scores_out=args.scores,
                                progress=TqdmProgress())
    print(f"kept {len(selection.instructions)} of {len(instructions)} instructions (score ≥ {selection.threshold:.4f}, "
          f"method {config.method}) → {args.out}")
    return 0


def cmd_calibrate(args) -> int:
    from .instructions_io import read_instructions
    from .models import load_model
    from .progress import TqdmProgress
    from .stages import calibrate_stage
    from .vector_io import load_directions

    config = config_from_args(args, CalibrationConfig)
    judge = _judge(args)
    ds = load_directions(args.vectors)
    instructions = read_instructions(args.instructions, column=args.column)
    lm = load_model(_spec(args))
    judge = judge or _judge(args, lm)
    # The rule and safeguards generation will use, so the γ picked is one the pairs can take.
    steering = SteeringConfig(mode=args.steering_mode)
    decoding = GenerateConfig(no_repeat_ngram_size=args.no_repeat_ngram_size, repetition_penalty=args.repetition_penalty)
    result = calibrate_stage(lm, ds, instructions, judge, config, out=args.out, require_pick=False, steering=steering,
                             generate=decoding, gate=GateConfig(enabled=True), progress=TqdmProgress())
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
    from .config import TrainConfig
    from .models import load_model
    from .progress import TqdmProgress
    from .training import train_dpo

    # Settings and data first: bad values are reported before the model loads.
    config = config_from_args(args, TrainConfig)
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
    from .formats import parse_layers
    from .instructions_io import read_instructions
    from .models import load_model
    from .progress import TqdmProgress
    from .stages import evaluate_stage
    from .training import load_trained
    from .vector_io import load_directions

    config = config_from_args(args, EvalConfig)
    steering = (SteeringConfig(args.gamma_plus, SteeringConfig().gamma_minus, parse_layers(args.steer_layers))
                if args.gamma_plus else None)
    judge = _judge(args)
    direction = load_directions(args.vectors) if args.vectors else None
    instructions = read_instructions(args.instructions, column=args.column)
    base = load_model(_spec(args))
    judge = judge or _judge(args, base)
    trained = load_trained(base, args.trained)
    rep = evaluate_stage(base, trained, instructions, judge, config, out=args.out, direction=direction,
                         steering=steering, progress=TqdmProgress())
    print(f"trained vs base on {rep.n} instructions ({rep.judge}, both orders): {rep.wins} wins, {rep.ties} ties, "
          f"{rep.losses} losses; win rate {rep.win_rate:.2f} (ties count half), "
          f"{config.confidence:.0%} interval [{rep.ci_low:.2f}, {rep.ci_high:.2f}]")
    print("mean score: " + ", ".join(f"{k} {v:.3f}" for k, v in rep.mean_score.items()))
    if rep.projection:
        print("mean projection onto the direction: " + ", ".join(f"{k} {v:.2f}" for k, v in rep.projection.items()))
    print(f"report: {args.out}")
    return 0


def cmd_audit(args) -> int:
    from .audit import audit_verdict, direction_overlap, orthogonalise, pair_gaps, reference_bank, reference_directions
    from .formats import parse_layers
    from .judges import JudgeConfig, make_judge
    from .models import load_model
    from .files import write_atomic
    from .progress import TqdmProgress
    from .vector_io import load_directions, save_directions

    judge_config = config_from_args(args, JudgeConfig, prefix="judge")
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
    """The commands. A command's settings come from its config dataclasses (name, default, help);
    only inputs, outputs and the model are written here."""
    parser = argparse.ArgumentParser(
        prog="icon2",
        description="Icon² engine: extract direction vectors, synthesise and filter instructions, calibrate γ and generate steered preference pairs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ConfigArgumentParser)

    def command(name: str, help: str, func, *configs: type, model: bool = True, judge: bool = False):
        p = sub.add_parser(name, help=help, description=help, dataclass_types=list(configs))
        if model:
            _model_args(p)
        if judge:
            p.add_config(JudgeConfig, prefix="judge")
        p.set_defaults(func=func)
        return p

    command("presets", "list the ready-made dimensions (the paper's four criteria and more)", cmd_presets, model=False)

    p = command("check", "check a model before a run: blocks, chat template, BOS rule, its own unsteered answers", cmd_check)
    p.add_argument("--max-new-tokens", type=int, default=64, help="length of each unsteered answer")
    p.add_argument("--out", help="also write the check as JSON here")

    p = command("extract", "extract one direction vector per layer for a dimension", cmd_extract, ExtractConfig)
    p.add_argument("--preset", help="a preset dimension (see 'icon2 presets')")
    p.add_argument("--name", help="name of a custom dimension")
    p.add_argument("--positive", action="append", default=[], help="positive system prompt (repeat for several pairs)")
    p.add_argument("--negative", action="append", default=[], help="negative system prompt (same count as --positive)")
    p.add_argument("--instructions", help="feature instructions (.txt/.jsonl/.csv); default: 48 built-in everyday ones")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--gguf", help="also write a llama.cpp control vector (.gguf)")

    p = command("generate", "generate chosen (+γ⁺) and rejected (γ⁻) responses per instruction", cmd_generate,
                SteeringConfig, GenerateConfig, GateConfig)
    p.add_argument("--vectors", action="append", required=True, help="direction file from 'icon2 extract'")
    p.add_argument("--instructions", required=True, help="instructions (.txt one per line, .jsonl, .csv)")
    p.add_argument("--out", required=True, help="output .jsonl of pairs")

    p = command("synthesize", "let the model write instructions itself (Magpie), cleaned and de-duplicated",
                cmd_synthesize, SynthesisConfig, CleaningRules)
    p.add_argument("--n", type=int, required=True, help="how many clean instructions to keep")
    p.add_argument("--allow-partial", action="store_true", help="write what was kept when attempts run out (default: error)")
    p.add_argument("--out", required=True, help="output .jsonl (or .txt, one per line)")
    p.add_argument("--report", help="also write the drop report as .json")

    p = command("filter", "score instructions by consistency with the directions and keep the top share", cmd_filter,
                FilterConfig)
    p.add_argument("--vectors", action="append", required=True, help="direction file (repeat for several dimensions)")
    p.add_argument("--instructions", required=True, help="instructions (.txt, .jsonl, .csv)")
    p.add_argument("--column", default=None, help="CSV column / JSON field holding the instruction")
    p.add_argument("--out", required=True, help="kept instructions, best first (.jsonl)")
    p.add_argument("--scores", help="every instruction's scores (.jsonl), for a histogram or a later threshold")

    p = command("calibrate", "sweep γ⁺ × γ⁻ on a sample, score with a judge, pick γ (paper, App. J)", cmd_calibrate,
                CalibrationConfig, judge=True)
    p.add_argument("--vectors", required=True, help="direction file from 'icon2 extract'")
    p.add_argument("--instructions", required=True, help="instructions to sample from (.txt, .jsonl, .csv)")
    p.add_argument("--column", default=None)
    p.add_argument("--out", required=True, help="the whole table and the pick (.json)")
    p.add_argument("--steering-mode", choices=STEERING_MODES, default=SteeringConfig().mode,
                   help="the steering rule generation will use (as 'icon2 generate --mode')")
    p.add_argument("--no-repeat-ngram-size", type=int, default=GenerateConfig().no_repeat_ngram_size,
                   help="the decoding safeguard generation will use (as 'icon2 generate')")
    p.add_argument("--repetition-penalty", type=float, default=GenerateConfig().repetition_penalty,
                   help="the decoding safeguard generation will use (as 'icon2 generate')")

    p = command("export", "write pairs as a TRL preference dataset (JSONL + Parquet + card)", cmd_export, model=False)
    p.add_argument("--pairs", required=True, help="pairs .jsonl from 'icon2 generate'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default="Icon² preference pairs", help="dataset name for the card")

    p = command("train", "DPO on the pairs with TRL (LoRA by default); resumes from the last checkpoint", cmd_train,
                TrainConfig)
    p.add_argument("--pairs", required=True, help="pairs .jsonl from 'icon2 generate', or an exported dataset (folder or .jsonl)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/, adapter/ or model/, train_log.jsonl, README.md")
    p.add_argument("--dataset-name", default=None, help="name of the dataset for the model card")
    p.add_argument("--restart", action="store_true", help="ignore existing checkpoints and start over")

    p = command("evaluate", "trained vs base on held-out instructions: win rate (both orders) and projection",
                cmd_evaluate, EvalConfig, judge=True)
    p.add_argument("--trained", required=True, help="run folder from 'icon2 train'")
    p.add_argument("--instructions", required=True, help="held-out instructions (.txt, .jsonl, .csv)")
    p.add_argument("--column", default=None)
    p.add_argument("--vectors", help="direction file: also report the mean projection onto it")
    p.add_argument("--gamma-plus", type=float, default=0.0, help="with --vectors: also score the steered base at this γ⁺")
    p.add_argument("--steer-layers", default=None, help="blocks to steer for the steered base, e.g. 8-15")
    p.add_argument("--out", required=True, help="report .json (summary and every response)")

    p = command("audit", "bias audit: a direction's overlap with reference directions, and what its pairs differ in",
                cmd_audit, judge=True)
    p.add_argument("--vectors", required=True, help="direction file from 'icon2 extract'")
    p.add_argument("--pairs", help="pairs .jsonl from 'icon2 generate' (or an exported dataset) to measure the side gaps of")
    p.add_argument("--layers", help="the steered band, e.g. 10-19 (default: the middle third)")
    p.add_argument("--cache-dir", default=None, help="folder caching the reference directions per model")
    p.add_argument("--orthogonalise", help="comma-separated references to project out of the direction, e.g. sentiment,length")
    p.add_argument("--orthogonalised-out", help="where to write the orthogonalised direction (default: beside --vectors)")
    p.add_argument("--out", help="write the whole audit as JSON here")

    p = command("pipeline", "run the stages from one .toml/.yaml config file", cmd_pipeline, model=False)
    p.add_argument("config")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a flag argparse refused (2, its message already printed)
        return int(exc.code or 0)
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
