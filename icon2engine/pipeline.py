"""Run the stages from one TOML/YAML config file: extract → synthesize → filter → calibrate → generate → export
→ train → evaluate.

Where the instructions come from: ``synthesize`` (the model writes them) when that stage runs,
else the ``instructions`` list or file. ``filter`` keeps the top share and remembers each kept
instruction's winning dimension, which ``generate`` then steers along. ``calibrate`` picks γ⁺
and γ⁻ for ``generate`` (replacing ``[steering]``'s values; its layers are calibrated too).
Every file is written to a temporary name and renamed when complete. ``train`` runs DPO on the
pairs (``[train]`` holds :class:`TrainConfig`); ``evaluate`` compares the trained model with the
base on ``[evaluate] instructions`` (held out) with ``[judge]``.
"""
from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .calibration import CalibrationConfig
from .cleaning import CleaningRules
from .config import Dimension, ExtractConfig, GenerateConfig, ModelSpec, PromptPair, SteeringConfig, config_from_dict
from .gate import GateConfig
from .quality import QualityConfig
from .errors import ConfigError, InputError
from .files import write_atomic
from .formats import parse_layers
from .evaluation import EvalConfig
from .filtering import FilterConfig
from .instructions_io import read_instructions
from .presets import default_feature_instructions, get_preset
from .judges import JudgeConfig
from .progress import NullProgress, Progress
from .synthesis import SynthesisConfig
from .training import TrainConfig

__all__ = ["PipelineConfig", "SynthesisSection", "load_pipeline_config", "run_pipeline", "parse_layers", "STAGES"]

STAGES = ("extract", "synthesize", "filter", "calibrate", "generate", "export", "train", "evaluate")
DEFAULT_STAGES = ("extract", "generate", "export")


def _dimension(entry: Any, where: str) -> Dimension:
    if isinstance(entry, str):
        return get_preset(entry)
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: a dimension is a preset name or a table with name and prompt_pairs")
    if "preset" in entry:
        return get_preset(entry["preset"])
    pairs = entry.get("prompt_pairs") or []
    return Dimension(
        name=entry.get("name", ""),
        description=entry.get("description", ""),
        prompt_pairs=tuple(PromptPair(p.get("positive", ""), p.get("negative", "")) for p in pairs),
        feature_instructions=tuple(entry.get("feature_instructions", ())),
    )


def _instructions(entry: Any, base: Path, where: str) -> list[str] | None:
    if entry is None:
        return None
    if isinstance(entry, list):
        return [str(x) for x in entry]
    if isinstance(entry, str):
        return read_instructions(base / entry)
    if isinstance(entry, dict) and "file" in entry:
        return read_instructions(base / entry["file"], column=entry.get("column"))
    raise ConfigError(f"{where}: give a list of instructions or a table with 'file' (and optional 'column')")



@dataclass(frozen=True)
class SynthesisSection:
    """The ``[synthesize]`` section: how many to keep, sampling settings and cleaning rules."""

    n_target: int
    config: SynthesisConfig
    rules: CleaningRules


@dataclass
class PipelineConfig:
    output: Path
    model: ModelSpec
    dimensions: list[Dimension]
    instructions: list[str]
    feature_instructions: list[str] | None = None
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    stages: tuple[str, ...] = DEFAULT_STAGES
    name: str = "Icon² preference pairs"
    export_gguf: bool = True
    synthesize: SynthesisSection | None = None
    filter: FilterConfig = field(default_factory=FilterConfig)
    calibrate: CalibrationConfig = field(default_factory=CalibrationConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    held_out: list[str] = field(default_factory=list)


def _gate_section(raw: dict | None) -> GateConfig:
    raw = dict(raw or {})
    quality = config_from_dict(QualityConfig, raw.pop("quality", None), where="[gate.quality]")
    return config_from_dict(GateConfig, {**raw, "quality": quality}, where="[gate]")


def _synthesis_section(raw: dict | None, where: str) -> SynthesisSection:
    raw = dict(raw or {})
    if "n_target" not in raw:
        raise ConfigError(f"{where}: say how many instructions to synthesise, e.g. n_target = 1000")
    n_target = raw.pop("n_target")
    if not isinstance(n_target, int) or isinstance(n_target, bool) or n_target < 1:
        raise ConfigError(f"{where}: n_target must be a whole number of at least 1, got {n_target!r}")
    rules = config_from_dict(CleaningRules, raw.pop("rules", None), where=f"{where}.rules")
    return SynthesisSection(n_target=n_target, config=config_from_dict(SynthesisConfig, raw, where=where), rules=rules)


def _grid_values(value: Any, where: str) -> Any:
    if isinstance(value, str):
        try:
            return tuple(float(x) for x in value.split(",") if x.strip())
        except ValueError:
            raise ConfigError(f"{where}: cannot read {value!r}; write e.g. [0.02, 0.05, 0.1]") from None
    return tuple(value) if isinstance(value, (list, tuple)) else value


def load_pipeline_config(path: str | os.PathLike) -> PipelineConfig:
    """Read a pipeline config (``.toml``, ``.yaml``/``.yml`` or ``.json``). Paths are relative to the file.

    Example (TOML):
        output = "out"
        dimensions = ["optimism"]
        stages = ["extract", "synthesize", "filter", "calibrate", "generate", "export"]
        [synthesize]
        n_target = 1000
        [filter]
        keep_fraction = 0.1
        [calibrate]
        gamma_plus_grid = [0.02, 0.05, 0.1]
        gamma_minus_grid = [-0.02, -0.05, -0.1]
        [judge]
        kind = "lexicon"
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            raw = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            raw = json.loads(text)
        else:
            raise ConfigError(f"{path}: use a .toml, .yaml or .json config file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    known = {
        "output", "name", "model", "dimensions", "instructions", "feature_instructions", "extract", "steering", "generate", "gate",
        "stages", "export_gguf", "synthesize", "filter", "calibrate", "judge", "train", "evaluate",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    base = path.parent
    model_raw = raw.get("model", {})
    model = ModelSpec(source=model_raw) if isinstance(model_raw, str) else config_from_dict(ModelSpec, model_raw, where="[model]")
    dims = [_dimension(d, f"{path}: dimensions[{i}]") for i, d in enumerate(raw.get("dimensions") or [])]
    if not dims:
        raise ConfigError(f"{path}: no dimensions; add e.g. dimensions = [\"optimism\"] or a table with prompt_pairs")
    stages = tuple(raw.get("stages", DEFAULT_STAGES))
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ConfigError(f"{path}: unknown stage(s) {', '.join(bad)}; choose from {', '.join(STAGES)}")
    stages = tuple(s for s in STAGES if s in stages)  # always in the method's order
    steering_raw = dict(raw.get("steering", {}))
    steering_raw["layers"] = parse_layers(steering_raw.get("layers"))
    instructions = _instructions(raw.get("instructions"), base, f"{path}: instructions") or []
    needs = [s for s in ("filter", "calibrate", "generate") if s in stages]
    if needs and not instructions and "synthesize" not in stages:
        raise ConfigError(
            f"{path}: no instructions for {', '.join(needs)}; add instructions = {{ file = \"...\" }} or the synthesize stage"
        )
    synth = _synthesis_section(raw.get("synthesize"), f"{path}: [synthesize]") if "synthesize" in stages else None
    calib_raw = dict(raw.get("calibrate") or {})
    for key in ("gamma_plus_grid", "gamma_minus_grid"):
        if key in calib_raw:
            calib_raw[key] = _grid_values(calib_raw[key], f"{path}: [calibrate] {key}")
    if "layers" in calib_raw:
        calib_raw["layers"] = parse_layers(calib_raw["layers"])
    elif steering_raw.get("layers") is not None:
        calib_raw["layers"] = steering_raw["layers"]  # calibrate where generation will steer
    filter_raw = dict(raw.get("filter") or {})
    if "layers" in filter_raw:
        filter_raw["layers"] = parse_layers(filter_raw["layers"])
    if "threshold" in filter_raw and "keep_fraction" not in filter_raw:
        filter_raw["keep_fraction"] = None
    eval_raw = dict(raw.get("evaluate") or {})
    held_out = _instructions(eval_raw.pop("instructions", None), base, f"{path}: [evaluate] instructions") or []
    if "layers" in eval_raw:
        eval_raw["layers"] = parse_layers(eval_raw["layers"])
    if "evaluate" in stages and not held_out:
        raise ConfigError(
            f"{path}: the evaluate stage needs held-out instructions; add [evaluate] instructions = {{ file = \"...\" }}"
        )
    return PipelineConfig(
        output=(base / raw.get("output", "icon2-output")).resolve(),
        name=raw.get("name", "Icon² preference pairs"),
        model=model,
        dimensions=dims,
        instructions=instructions,
        feature_instructions=_instructions(raw.get("feature_instructions"), base, f"{path}: feature_instructions"),
        extract=config_from_dict(ExtractConfig, raw.get("extract"), where="[extract]"),
        steering=config_from_dict(SteeringConfig, steering_raw, where="[steering]"),
        generate=config_from_dict(GenerateConfig, raw.get("generate"), where="[generate]"),
        gate=_gate_section(raw.get("gate")),
        stages=stages,
        export_gguf=bool(raw.get("export_gguf", True)),
        synthesize=synth,
        filter=config_from_dict(FilterConfig, filter_raw, where="[filter]"),
        calibrate=config_from_dict(CalibrationConfig, calib_raw, where="[calibrate]"),
        judge=config_from_dict(JudgeConfig, raw.get("judge"), where="[judge]"),
        train=config_from_dict(TrainConfig, raw.get("train"), where="[train]"),
        evaluate=config_from_dict(EvalConfig, eval_raw, where="[evaluate]"),
        held_out=held_out,
    )


def run_pipeline(config: PipelineConfig, progress: Progress | None = None, log=print) -> dict[str, Any]:
    """Run the configured stages and write everything under ``config.output``.

    Files: ``vectors/``, ``instructions.jsonl`` + ``synthesis_report.json`` (synthesize),
    ``scores.jsonl`` (every instruction's scores) + ``kept.jsonl`` (filter),
    ``calibration.json`` (calibrate), ``pairs.jsonl`` (generate), ``dataset/`` (export), ``train/`` (train:
    adapter or model, log, model card), ``evaluation.json`` (evaluate).

    Returns a summary dict (paths and per-stage compute), also saved as ``summary.json``.
    """
    from .export import export_dataset, read_pairs_jsonl
    from .gate import drop_summary
    from .judges import make_judge
    from .models import load_model
    from .stages import calibrate_stage, extract_stage, filter_stage, generate_stage, synthesize_stage
    from .stats import StageStats
    from .vector_io import load_directions

    progress = progress or NullProgress()
    out = config.output
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"output": str(out), "stages": {}}
    # A judge that cannot load or be built fails before any slow stage runs.
    judged = bool({"calibrate", "evaluate"} & set(config.stages))
    judge = make_judge(config.judge) if judged and config.judge.kind != "self" else None
    log(f"loading model {config.model.source} …")
    lm = load_model(config.model)
    if judged and judge is None:
        judge = make_judge(config.judge, lm=lm)
    directions = {}
    vec_dir = out / "vectors"
    if "extract" in config.stages:
        for dim in config.dimensions:
            stats = StageStats(stage="extract")
            feats = config.feature_instructions or list(dim.feature_instructions) or default_feature_instructions()
            ds, _, _ = extract_stage(lm, dim, feats, config.extract, out=vec_dir / f"{dim.name}.safetensors",
                                     gguf=vec_dir / f"{dim.name}.gguf" if config.export_gguf else None,
                                     progress=progress, stats=stats)
            directions[dim.name] = ds
            summary["stages"][f"extract:{dim.name}"] = stats.as_dict()
            log(f"extracted {dim.name}: {ds.n_pairs} pairs, vectors in {vec_dir}")
    else:
        for dim in config.dimensions:
            directions[dim.name] = load_directions(vec_dir / f"{dim.name}.safetensors")
    instructions = list(config.instructions)
    per_instruction_dims: list[str] | None = None
    if "synthesize" in config.stages:
        section = config.synthesize
        stats = StageStats(stage="synthesize")
        result = synthesize_stage(lm, section.n_target, section.config, section.rules, out=out / "instructions.jsonl",
                                  report=out / "synthesis_report.json", progress=progress, stats=stats)
        instructions = result.instructions
        summary["stages"]["synthesize"] = dict(stats.as_dict(), **{k: result.report.as_dict()[k] for k in ("attempts", "kept", "acceptance_rate")})
        log(f"synthesised {len(instructions)} instructions: {result.report.summary()}")
    if "filter" in config.stages:
        stats = StageStats(stage="filter")
        scores, selection = filter_stage(lm, directions, instructions, config.filter, out=out / "kept.jsonl",
                                         scores_out=out / "scores.jsonl", progress=progress, stats=stats)
        instructions, per_instruction_dims = selection.instructions, selection.dimensions
        summary["stages"]["filter"] = dict(stats.as_dict(), kept=len(instructions), threshold=selection.threshold)
        log(f"kept {len(instructions)} of {len(scores.instructions)} instructions (score ≥ {selection.threshold:.3f})")
    steering = config.steering
    if "calibrate" in config.stages:
        stats = StageStats(stage="calibrate")
        result = calibrate_stage(lm, directions, instructions, judge, config.calibrate, out=out / "calibration.json",
                                 dimensions=per_instruction_dims, require_pick=False, steering=steering,
                                 generate=config.generate, gate=config.gate, progress=progress, stats=stats)
        summary["stages"]["calibrate"] = dict(stats.as_dict(), pick=result.pick)
        log(result.format_table())
        if result.pick is None:
            raise InputError(f"calibration picked no γ ({result.reason}); the table is in {out / 'calibration.json'}")
        from dataclasses import replace

        steering = replace(steering, gamma_plus=result.pick["gamma_plus"], gamma_minus=result.pick["gamma_minus"],
                           layers=result.layers)
        log(f"calibrated: γ⁺={steering.gamma_plus} γ⁻={steering.gamma_minus} ({result.reason})")
    pairs_path = out / "pairs.jsonl"
    if "generate" in config.stages:
        stats = StageStats(stage="generate")
        if per_instruction_dims is None:  # no filter: every instruction along every dimension, one dimension after another
            per_instruction_dims = [dim.name for dim in config.dimensions for _ in instructions]
            instructions = instructions * len(config.dimensions)
        result = generate_stage(lm, directions, instructions, dimensions=per_instruction_dims, steering=steering,
                                config=config.generate, gate=config.gate, out=pairs_path, progress=progress, stats=stats)
        summary["stages"]["generate"] = {**stats.as_dict(), "gate": {"kept": len(result.pairs), "dropped": result.dropped_counts,
                                                                    "retries": result.retries}}
        log(f"generated {drop_summary(len(result.pairs), result.dropped_counts, result.retries)} → {pairs_path}")
    if "export" in config.stages:
        rows = read_pairs_jsonl(pairs_path)
        paths = export_dataset(
            [{k: v for k, v in r.items() if k not in ("model", "model_revision")} for r in rows],
            out / "dataset", model=lm.name, model_revision=lm.revision, name=config.name,
        )
        summary["dataset"] = {k: str(v) for k, v in paths.items()}
        log(f"dataset → {out / 'dataset'}")
    trained = None
    if "train" in config.stages:
        from .training import train_dpo

        stats = StageStats(stage="train")
        res = train_dpo(lm, read_pairs_jsonl(pairs_path), out / "train", config.train, dataset_name=config.name,
                        run_name=out.name, progress=progress, stats=stats)
        summary["stages"]["train"] = dict(stats.as_dict(), steps=res.steps, stopped=res.stopped)
        if res.stopped:
            log(f"training stopped after {res.steps} steps; checkpoint {res.checkpoint} kept (run again to resume)")
            write_atomic(out / "summary.json", json.dumps(summary, indent=2))
            return summary
        trained = res.lm
        log(f"trained {res.steps} steps → {res.model_dir}")
    if "evaluate" in config.stages:
        from .stages import evaluate_stage
        from .training import load_trained

        trained = trained or load_trained(lm, out / "train")
        stats = StageStats(stage="evaluate")
        rep = evaluate_stage(lm, trained, config.held_out, judge, config.evaluate, out=out / "evaluation.json",
                             direction=directions[config.dimensions[0].name], progress=progress, stats=stats)
        summary["stages"]["evaluate"] = dict(stats.as_dict(), win_rate=rep.win_rate, ci=[rep.ci_low, rep.ci_high],
                                             wins=rep.wins, ties=rep.ties, losses=rep.losses)
        log(f"trained vs base: win rate {rep.win_rate:.2f} [{rep.ci_low:.2f}, {rep.ci_high:.2f}] ({rep.judge})")
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary
