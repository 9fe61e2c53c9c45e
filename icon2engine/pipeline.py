"""Run the stages from one TOML/YAML config file: extract → generate → export."""
from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Dimension, ExtractConfig, GenerateConfig, ModelSpec, PromptPair, SteeringConfig, config_from_dict
from .errors import ConfigError
from .instructions_io import read_instructions
from .presets import default_feature_instructions, get_preset
from .progress import NullProgress, Progress

__all__ = ["PipelineConfig", "load_pipeline_config", "run_pipeline", "parse_layers"]

STAGES = ("extract", "generate", "export")


def parse_layers(value: Any) -> tuple[int, ...] | None:
    """Accept ``None``, ``[8, 9, 10]``, ``"8-15"`` or ``"8,9,12"``."""
    if value in (None, "", "auto"):
        return None
    if isinstance(value, (list, tuple)):
        return tuple(int(x) for x in value)
    text = str(value).strip()
    try:
        if "-" in text and "," not in text:
            a, b = (int(x) for x in text.split("-", 1))
            if b < a:
                raise ConfigError(f"layer range {text!r} ends before it starts; write it as START-END")
            return tuple(range(a, b + 1))
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"cannot read layers {value!r}; write e.g. 8-15 or 8,9,10") from None


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
    stages: tuple[str, ...] = STAGES
    name: str = "Icon² preference pairs"
    export_gguf: bool = True


def load_pipeline_config(path: str | os.PathLike) -> PipelineConfig:
    """Read a pipeline config (``.toml``, ``.yaml``/``.yml`` or ``.json``). Paths are relative to the file."""
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
    known = {"output", "name", "model", "dimensions", "instructions", "feature_instructions", "extract", "steering", "generate", "stages", "export_gguf"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    base = path.parent
    model_raw = raw.get("model", {})
    model = ModelSpec(source=model_raw) if isinstance(model_raw, str) else config_from_dict(ModelSpec, model_raw, where="[model]")
    dims = [_dimension(d, f"{path}: dimensions[{i}]") for i, d in enumerate(raw.get("dimensions") or [])]
    if not dims:
        raise ConfigError(f"{path}: no dimensions; add e.g. dimensions = [\"optimism\"] or a table with prompt_pairs")
    stages = tuple(raw.get("stages", STAGES))
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ConfigError(f"{path}: unknown stage(s) {', '.join(bad)}; choose from {', '.join(STAGES)}")
    steering_raw = dict(raw.get("steering", {}))
    steering_raw["layers"] = parse_layers(steering_raw.get("layers"))
    instructions = _instructions(raw.get("instructions"), base, f"{path}: instructions") or []
    if "generate" in stages and not instructions:
        raise ConfigError(f"{path}: no instructions to generate pairs for; add instructions = {{ file = \"...\" }}")
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
        stages=stages,
        export_gguf=bool(raw.get("export_gguf", True)),
    )


def run_pipeline(config: PipelineConfig, progress: Progress | None = None, log=print) -> dict[str, Any]:
    """Run the configured stages and write everything under ``config.output``.

    Returns a summary dict (paths and per-stage compute), also saved as ``summary.json``.
    """
    from .directions import extract_directions
    from .export import export_dataset, read_pairs_jsonl
    from .generation import generate_pairs
    from .models import load_model
    from .stats import StageStats
    from .vector_io import export_control_vector_gguf, load_directions, save_directions

    progress = progress or NullProgress()
    out = config.output
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"output": str(out), "stages": {}}
    log(f"loading model {config.model.source} …")
    lm = load_model(config.model)
    directions = {}
    vec_dir = out / "vectors"
    if "extract" in config.stages:
        for dim in config.dimensions:
            stats = StageStats(stage="extract")
            feats = config.feature_instructions or list(dim.feature_instructions) or default_feature_instructions()
            ds = extract_directions(lm, dim, feats, config.extract, progress=progress, stats=stats)
            save_directions(ds, vec_dir / f"{dim.name}.safetensors")
            if config.export_gguf:
                export_control_vector_gguf(ds, vec_dir / f"{dim.name}.gguf", getattr(lm.model.config, "model_type", "llama"))
            directions[dim.name] = ds
            summary["stages"][f"extract:{dim.name}"] = stats.as_dict()
            log(f"extracted {dim.name}: {ds.n_pairs} pairs, vectors in {vec_dir}")
    else:
        for dim in config.dimensions:
            directions[dim.name] = load_directions(vec_dir / f"{dim.name}.safetensors")
    pairs_path = out / "pairs.jsonl"
    if "generate" in config.stages:
        stats = StageStats(stage="generate")
        rows = []
        for dim in config.dimensions:
            pairs = generate_pairs(
                lm, directions[dim.name], config.instructions, steering=config.steering,
                config=config.generate, progress=progress, stats=stats,
            )
            rows += [dict(p.as_dict(), model=lm.name, model_revision=lm.revision) for p in pairs]
        tmp = pairs_path.with_suffix(".jsonl.partial")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, pairs_path)
        summary["stages"]["generate"] = stats.as_dict()
        log(f"generated {len(rows)} pairs → {pairs_path}")
    if "export" in config.stages:
        rows = read_pairs_jsonl(pairs_path)
        paths = export_dataset(
            [{k: v for k, v in r.items() if k not in ("model", "model_revision")} for r in rows],
            out / "dataset", model=lm.name, model_revision=lm.revision, name=config.name,
        )
        summary["dataset"] = {k: str(v) for k, v in paths.items()}
        log(f"dataset → {out / 'dataset'}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
