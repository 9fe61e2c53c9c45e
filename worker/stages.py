"""One handler per stage kind: load rows, turn them into engine configs, call the engine.

A handler returns ``(write, compute)``: ``write`` stores the results and is run by the
services inside the transaction that marks the chunk done; ``compute`` is small JSON.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

from django.conf import settings

from icon2engine import (
    Dimension as EngineDimension,
    ExtractConfig,
    GenerateConfig,
    PromptPair as EnginePromptPair,
    StageStats,
    SteeringConfig,
    default_feature_instructions,
    direction_cosines,
    load_directions,
)
from icon2engine.stages import extract_stage, generate_stage, save_direction_files
from icon2engine import Icon2Error
from webapp.jobs import services, stores
from webapp.jobs.selectors import direction_paths, kept_rows, score_chunk_rows
from worker.model_cache import get_model
from worker.progress import ChunkProgress

log = logging.getLogger(__name__)

Result = tuple[Callable[[], None], dict]


class StageFailed(Icon2Error):
    """A handler's failure that keeps ``metrics`` on the stage: the runner hands them to
    :func:`webapp.jobs.services.chunk_fail`, which stores them with the failure."""

    def __init__(self, message: str, *, metrics: dict) -> None:
        super().__init__(message)
        self.metrics = metrics


def _run_dir(run) -> Path:
    path = Path(settings.MEDIA_ROOT) / "teams" / str(run.project.team_id) / "runs" / str(run.pk)
    path.mkdir(parents=True, exist_ok=True)
    return path


def engine_dimension(dim) -> EngineDimension:
    return EngineDimension(
        name=dim.name,
        description=dim.description,
        prompt_pairs=tuple(EnginePromptPair(p.positive, p.negative) for p in dim.pairs.all()),
        feature_instructions=tuple(dim.feature_instruction_list),
        refusal_allowed=dim.refusal_allowed,
    )


def run_gate_config(run):
    """The run's quality gate (one place for generate and calibrate): on or off, and which of its
    dimensions, keyed by id as the direction sets are, may refuse on the chosen side."""
    from icon2engine.gate import GateConfig

    refusing = tuple(str(pk) for pk in run.dimensions.filter(refusal_allowed=True).values_list("pk", flat=True))
    return GateConfig(enabled=run.quality_gate, refusal_allowed=refusing)


def run_layers(run, n_layers: int) -> tuple[int, ...] | None:
    if run.layer_start is None or run.layer_end is None:
        return None
    return tuple(range(run.layer_start, run.layer_end + 1))


def run_directions(run) -> dict:
    """The run's extracted direction sets, keyed (and named) by dimension id, in id order."""
    directions = {}
    for dimension_id, path in direction_paths(run=run).items():
        ds = load_directions(path)
        ds.dimension = str(dimension_id)
        directions[ds.dimension] = ds
    return directions


def direction_files_save(run, lm, ds, stem: str) -> tuple[Path, Path]:
    """Write a direction set under the run's folder: safetensors (what the worker loads) and a
    llama.cpp control vector (for the export)."""
    out = _run_dir(run) / "vectors"
    return save_direction_files(lm, ds, out / f"{stem}.safetensors", out / f"{stem}.gguf")


def steering_dimensions(rows, directions: dict) -> list[str]:
    """Per instruction, the dimension it is steered along: the filter's winner, else the first."""
    first = next(iter(directions), None)
    return [str(r.winner_id) if str(r.winner_id) in directions else first for r in rows]


def extract(chunk, beat) -> Result:

    run = chunk.stage.run
    lm = get_model(run.model)
    dims = list(run.dimensions.order_by("pk")[chunk.start : chunk.stop])
    stats = StageStats(stage="extract")
    progress = ChunkProgress(chunk, heartbeat=beat)
    results = []
    for dim in dims:
        spec = engine_dimension(dim)
        feats = list(spec.feature_instructions) or default_feature_instructions()
        out = _run_dir(run) / "vectors" / f"dimension-{dim.pk}"
        ds, path, gguf = extract_stage(lm, spec, feats, ExtractConfig(seed=run.seed), out=out.with_suffix(".safetensors"),
                                       gguf=out.with_suffix(".gguf"), progress=progress, stats=stats)
        results.append((dim, path, gguf, ds))
    # Are the dimensions distinct? Cosines between their directions, per layer, for the run page.
    cosines = {"dimensions": [dim.pk for dim, *_ in results], "layers": direction_cosines([r[3] for r in results])} if len(results) > 1 else None

    def write() -> None:
        stores.directions_store(run=run, items=[(dim.pk, str(path), str(gguf), ds.diagnostics()) for dim, path, gguf, ds in results])
        if cosines:
            services.stage_metrics_merge(stage_id=chunk.stage_id, values={"cosines": cosines})

    return write, stats.as_dict()


def generate(chunk, beat) -> Result:
    """Steered pairs through the quality gate: a degenerate side is regenerated at a smaller |γ|,
    a pair that still fails is dropped and counted by reason (never stored, so review and
    training never see it)."""
    from icon2engine.gate import drop_summary
    from icon2engine.quality import quality_columns

    run = chunk.stage.run
    lm = get_model(run.model)
    # The kept instructions are ranks 0..k−1 of the filter's order: a chunk reads its range by index.
    rows = kept_rows(run=run, start=chunk.start, stop=chunk.stop)
    directions = run_directions(run)
    dims = steering_dimensions(rows, directions)
    steering = SteeringConfig(run.gamma_plus_effective, run.gamma_minus_effective, run_layers(run, lm.n_layers), mode=run.steering_mode,
                              pairing=run.pairing)
    config = run_generate_config(run)
    stats = StageStats(stage="generate")
    result = generate_stage(
        lm, directions, [r.text for r in rows], dimensions=dims, steering=steering, config=config, gate=run_gate_config(run),
        out=None, progress=ChunkProgress(chunk, scale=1 / 3, heartbeat=beat), stats=stats,
    )
    pairs = result.pairs
    compute = stats.as_dict()
    compute["gate"] = result.summary()
    log.info("generate chunk %s: %s", chunk.pk, drop_summary(len(pairs), result.dropped_counts, result.retries))
    # For a reviewed run, the evaluation judge's own verdict on each pair, so the Agreement page can
    # say how far the judge agrees with the annotators. A judge that fails here fails the stage.
    verdicts, judge = [None] * len(pairs), None
    if run.require_review and pairs:
        judge = run_judge(run, "evaluation", lm=lm)
        verdicts = [float(judge.compare(p.instruction, p.chosen, p.rejected)) for p in pairs]
        compute["judge"] = getattr(judge, "name", type(judge).__name__)
    try:  # only a figure for the cost panel: it must never fail the pairs
        compute["sample_and_rank"] = _sample_and_rank(run, result, lm=lm, judge=judge, n_instructions=len(rows)) if pairs else None
    except Exception as exc:
        log.warning("no sample-and-rank estimate for chunk %s: %s", chunk.pk, exc)

    def write() -> None:
        stores.pairs_store(run_id=run.pk, pairs=[
            {"instruction_id": rows[p.index].pk, "dimension_id": int(p.dimension), "chosen": p.chosen, "rejected": p.rejected,
             "gamma_plus": p.gamma_plus, "gamma_minus": p.gamma_minus, "layers": list(p.layers), "seed": p.seed,
             "chosen_tokens": p.chosen_tokens, "rejected_tokens": p.rejected_tokens,
             "quality": quality_columns(p.quality), "retries": list(p.retries), "judge_verdict": verdict}
            for p, verdict in zip(pairs, verdicts)
        ])

    return write, compute


def run_judge(run, role: str, *, lm=None):
    """The engine judge a run scores with in `role` ("calibration" or "evaluation"): the judge the
    run chose, or the site's default. A reward model's folder obeys the model-path rule."""
    from icon2engine import ModelLoadError
    from icon2engine.judges import JudgeConfig, make_judge
    from webapp.studio.model_paths import MODEL_PATH_REFUSED, model_path_allowed

    row = run.calibration_judge if role == "calibration" else run.eval_judge
    if row is None:
        default = settings.ICON2_CALIBRATION_JUDGE if role == "calibration" else settings.ICON2_EVAL_JUDGE
        return make_judge(JudgeConfig(kind=default), lm=lm)
    config = row.engine_config()
    if config["kind"] == "reward_model" and not model_path_allowed(config["path"]):
        raise ModelLoadError(f"judge {row.name}: {MODEL_PATH_REFUSED}")
    if config["kind"] == "llm":  # the site's rule for where judge requests may go (docs/security.md)
        config["allowed_hosts"] = tuple(settings.ICON2_JUDGE_ALLOWED_HOSTS)
    return make_judge(JudgeConfig(**config), lm=lm)


def run_generate_config(run, *, max_new_tokens: int | None = None) -> GenerateConfig:
    """The run's decoding settings, safeguards included (one place for generate and calibrate)."""
    return GenerateConfig(
        max_new_tokens=max_new_tokens or run.max_new_tokens, batch_size=settings.ICON2_GENERATE_BATCH,
        do_sample=run.do_sample, temperature=run.temperature, top_p=run.top_p, seed=run.seed,
        no_repeat_ngram_size=run.no_repeat_ngram_size, repetition_penalty=run.repetition_penalty,
    )


def _sample_and_rank(run, result, *, lm, judge=None, n_instructions: int) -> dict:
    """What the paper's baseline would have cost for these instructions: its generation priced
    from this chunk's own measured generation (every row the gate generated, retries included),
    its judging from timing the configured judge on a few of the responses just made."""

    from icon2engine.cost import sample_and_rank_estimate

    judge = judge or run_judge(run, "evaluation", lm=lm)  # the one the verdicts used, not a second load
    pairs = result.pairs
    sample = min(8, len(pairs))
    prompts = [p.instruction for p in pairs[:sample]] * 2
    responses = [p.chosen for p in pairs[:sample]] + [p.rejected for p in pairs[:sample]]
    t0 = time.perf_counter()
    if responses:
        judge.score_many(prompts, responses)
    per_response = (time.perf_counter() - t0) / max(1, len(responses))
    return sample_and_rank_estimate(
        result.generation, rows_generated=result.rows_generated, n_instructions=n_instructions,
        samples=settings.ICON2_COST_SAMPLES,
        judge_s_per_response=per_response,
    )


def synthesize(chunk, beat) -> Result:
    from icon2engine.synthesis import SynthesisConfig, synthesize as engine_synthesize

    run = chunk.stage.run
    lm = get_model(run.model)
    stats = StageStats(stage="synthesize")
    # Each chunk samples with its own seed, so chunks (on any worker) draw different instructions.
    result = engine_synthesize(
        lm, chunk.size, SynthesisConfig(seed=run.seed * 1000 + chunk.index),
        progress=ChunkProgress(chunk, heartbeat=beat), stats=stats,
    )
    report = result.report.as_dict()

    def write() -> None:
        stores.instructions_synthesized_store(run_id=run.pk, start=chunk.start, texts=result.instructions)

    compute = stats.as_dict()
    compute.update(attempts=report["attempts"], kept=report["passed"], acceptance_rate=report["acceptance_rate"], dropped=report["dropped"])
    return write, compute


def score(chunk, beat) -> Result:
    """Consistency scores of a slice of the run's instructions, on every dimension.

    Chunks store the paper's raw score per dimension; the centred score the filter ranks by is
    that minus the pool's mean raw score for the dimension (exactly the engine's centring, since
    the score is linear in the hidden state), which needs the whole pool, so it is computed
    when the last chunk is in (webapp.jobs.filtering.filter_finalize).
    """
    from icon2engine.filtering import FilterConfig, score_instructions

    run = chunk.stage.run
    lm = get_model(run.model)
    rows = score_chunk_rows(run=run, start=chunk.start, stop=chunk.stop)
    stats = StageStats(stage="filter")
    if not rows:  # a range of a synthesised pool where every instruction was a dropped duplicate
        return (lambda: None), stats.as_dict()
    directions = run_directions(run)
    scores = score_instructions(
        lm, directions, [r.text for r in rows], FilterConfig(method="paper", keep_fraction=1.0, batch_size=settings.ICON2_SCORE_BATCH),
        progress=ChunkProgress(chunk, heartbeat=beat), stats=stats,
    )
    paper = scores.paper_scores  # (n, n_dims)

    def write() -> None:
        stores.scores_store(pks=[r.pk for r in rows], dimensions=list(scores.dimensions), scores=paper.tolist())

    return write, stats.as_dict()


def calibration_sample(device) -> int:
    """Instructions the γ sweep uses: ICON2_CALIBRATION_SAMPLE (the paper's ~100) on an accelerator,
    at most ICON2_CALIBRATION_SAMPLE_CPU on a CPU, so a run that calibrates by default (any model but
    the embedded one) finishes its sweep in minutes there."""
    if str(device).startswith("cpu"):
        return min(settings.ICON2_CALIBRATION_SAMPLE, settings.ICON2_CALIBRATION_SAMPLE_CPU)
    return settings.ICON2_CALIBRATION_SAMPLE


def calibrate(chunk, beat) -> Result:
    """Sweep γ on a sample of the kept instructions with the configured judge; the pick becomes
    the run's γ⁺/γ⁻ and the whole table is kept in the stage's metrics for the run page."""
    from icon2engine.calibration import CalibrationConfig, calibrate as engine_calibrate, sample_positions
    from webapp.jobs.selectors import kept_count, kept_rows_at

    run = chunk.stage.run
    lm = get_model(run.model)
    # Read only the instructions the engine would sample from the kept pool (it then takes them all).
    sample = calibration_sample(lm.device)
    rows = kept_rows_at(run=run, ranks=sample_positions(kept_count(run=run), sample, run.seed))
    directions = run_directions(run)
    dims = steering_dimensions(rows, directions)
    judge = run_judge(run, "calibration", lm=lm)
    stats = StageStats(stage="calibrate")
    result = engine_calibrate(
        lm, directions, [r.text for r in rows], judge,
        CalibrationConfig(
            n_instructions=min(sample, len(rows)), layers=run_layers(run, lm.n_layers),
            max_new_tokens=min(run.max_new_tokens, 64), seed=run.seed,
        ),
        dimensions=dims, steering=SteeringConfig(mode=run.steering_mode),  # the rule; γ is what is being chosen
        generate=run_generate_config(run), gate=run_gate_config(run),
        progress=ChunkProgress(chunk, heartbeat=beat), stats=stats,
    )
    summary = result.as_dict()
    summary.pop("examples", None)
    if result.pick is None:  # the chunk fails (retryable); the table stays so the run page can show why
        raise StageFailed(f"calibration picked no γ: {result.reason}", metrics={"calibration": summary})

    def write() -> None:
        stores.run_gamma_store(run_id=run.pk, gamma_plus=result.pick["gamma_plus"], gamma_minus=result.pick["gamma_minus"])
        services.stage_metrics_merge(stage_id=chunk.stage_id, values={"calibration": summary})

    return write, stats.as_dict()


def run_train_config(run):
    """The engine's DPO settings from the run's (the form's bounds must be ones training accepts)."""
    from icon2engine.training import TrainConfig

    return TrainConfig(
        method="lora" if run.dpo_use_lora else "full", beta=run.dpo_beta, learning_rate=run.dpo_learning_rate,
        epochs=float(run.dpo_epochs), batch_size=run.dpo_batch_size, max_length=run.dpo_max_length,
        lora_r=run.dpo_lora_r, seed=run.seed,
    )


def train(chunk, beat) -> Result:
    """DPO on the dataset the review gate wrote (every pair when review is not required), less
    the pairs the held-out split reserves for evaluation."""
    from icon2engine import Icon2Error, StopRequested
    from icon2engine.reward_hacking import side_gaps, training_warnings
    from icon2engine.training import train_dpo
    from webapp.jobs.selectors import held_out_split, training_rows

    run = chunk.stage.run
    lm = get_model(run.model)
    split = held_out_split(run=run, limit=settings.ICON2_EVAL_MAX)
    eval_ids, reserved = split.eval_instructions, split.reserved_pairs
    rows, meta = training_rows(run=run)  # what the review gate wrote, for a reviewed run
    rows = [r for r in rows if r.get("pair_id") not in set(reserved)]
    if not rows:
        raise Icon2Error(
            "no pairs to train on: none passed review (or all were set aside for evaluation); "
            "review more pairs, or generate more"
        )
    config = run_train_config(run)
    stats = StageStats(stage="train")
    out = _run_dir(run) / "trained"
    result = train_dpo(
        lm, rows, out, config, dataset_name=f"{run.project.name} / {run.name}", run_name=f"run-{run.pk}",
        progress=ChunkProgress(chunk, heartbeat=beat, percent=True, curve=True), stats=stats,
    )
    if result.stopped:
        raise StopRequested("the run was cancelled; the last checkpoint is kept for a retry")
    last = result.log[-1] if result.log else {}
    curve = [{k: v for k, v in e.items() if isinstance(v, (int, float))} for e in result.log]
    warnings = training_warnings(curve, total_steps=result.steps, pairs=rows)

    def write() -> None:
        services.stage_metrics_merge(stage_id=chunk.stage_id, values={
            "output_dir": str(out), "steps": result.steps, "pairs": len(rows),
            "gate": meta.get("counts", {}), "held_out_instructions": eval_ids, "reserved_pairs": reserved,
            "final": {k: v for k, v in last.items() if isinstance(v, (int, float))},
            "curve": curve[-200:], "warnings": warnings, "gaps": side_gaps(rows),
        })

    return write, stats.as_dict()


def evaluate(chunk, beat) -> Result:
    """Trained against base on held-out instructions, judged in both orders, with projections."""
    from icon2engine import Icon2Error
    from icon2engine.evaluation import EvalConfig, evaluate as engine_evaluate
    from icon2engine.training import load_trained
    from webapp.jobs.models import Instruction

    run = chunk.stage.run
    train_stage = run.stages.get(kind="train")
    ids = train_stage.metrics.get("held_out_instructions") or []
    texts = list(Instruction.objects.filter(pk__in=ids).order_by("index").values_list("text", flat=True))
    if not texts:
        raise Icon2Error("no held-out instructions to evaluate on: lower the keep fraction or add instructions")
    started = time.perf_counter()
    base = get_model(run.model)
    trained = load_trained(base, train_stage.metrics["output_dir"])  # the adapter merged in: inference runs at base speed
    direction = next(iter(run_directions(run).values()), None)
    stats = StageStats(stage="evaluate")
    report = engine_evaluate(
        base, trained, texts, run_judge(run, "evaluation", lm=base),
        EvalConfig(max_new_tokens=min(run.max_new_tokens, 64), layers=run_layers(run, base.n_layers)),
        direction=direction, progress=ChunkProgress(chunk, heartbeat=beat, percent=True), stats=stats,
    )
    summary = report.summary()
    summary.pop("stats", None)
    summary["examples"] = report.rows[:5]
    summary["seconds_per_instruction"] = round((time.perf_counter() - started) / len(texts), 2)
    summary = json.loads(json.dumps(summary, default=float))  # numpy scalars → plain JSON numbers

    def write() -> None:
        services.stage_metrics_merge(stage_id=chunk.stage_id, values={"evaluation": summary})

    return write, stats.as_dict()


HANDLERS: dict[str, Callable] = {"train": train, "evaluate": evaluate, "calibrate": calibrate, "extract": extract, "synthesize": synthesize, "filter": score, "generate": generate}
