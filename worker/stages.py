"""One handler per stage kind: load rows, turn them into engine configs, call the engine.

A handler returns ``(write, compute)``: ``write`` stores the results and is run by the
services inside the transaction that marks the chunk done; ``compute`` is small JSON.
"""
from __future__ import annotations

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
    export_control_vector_gguf,
    extract_directions,
    generate_pairs,
    load_directions,
    save_directions,
)
from worker.model_cache import get_model
from worker.progress import ChunkProgress

Result = tuple[Callable[[], None], dict]


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
    )


def run_layers(run, n_layers: int) -> tuple[int, ...] | None:
    if run.layer_start is None or run.layer_end is None:
        return None
    return tuple(range(run.layer_start, run.layer_end + 1))


def extract(chunk, beat) -> Result:
    from webapp.jobs.models import DirectionArtifact

    run = chunk.stage.run
    lm = get_model(run.model)
    dims = list(run.dimensions.order_by("pk"))[chunk.start : chunk.stop]
    stats = StageStats(stage="extract")
    progress = ChunkProgress(chunk, heartbeat=beat)
    out = _run_dir(run) / "vectors"
    results = []
    for dim in dims:
        spec = engine_dimension(dim)
        feats = list(spec.feature_instructions) or default_feature_instructions()
        ds = extract_directions(lm, spec, feats, ExtractConfig(seed=run.seed), progress=progress, stats=stats)
        path = save_directions(ds, out / f"dimension-{dim.pk}.safetensors")
        gguf = export_control_vector_gguf(ds, out / f"dimension-{dim.pk}.gguf", getattr(lm.model.config, "model_type", "llama"))
        results.append((dim, path, gguf, ds.diagnostics()))

    def write() -> None:
        for dim, path, gguf, diagnostics in results:
            DirectionArtifact.objects.update_or_create(
                run=run, dimension=dim,
                defaults={"path": str(path), "gguf_path": str(gguf), "diagnostics": diagnostics},
            )

    return write, stats.as_dict()


def generate(chunk, beat) -> Result:
    from webapp.jobs.models import DirectionArtifact, Pair

    run = chunk.stage.run
    lm = get_model(run.model)
    rows = list(run.instructions.filter(kept=True).order_by("rank", "index").select_related("winner"))[chunk.start : chunk.stop]
    artifacts = {a.dimension_id: a for a in DirectionArtifact.objects.filter(run=run)}
    directions = {str(dim_id): load_directions(a.path) for dim_id, a in artifacts.items()}
    fallback = str(min(artifacts)) if artifacts else None
    dims = [str(r.winner_id) if r.winner_id in artifacts else fallback for r in rows]
    steering = SteeringConfig(run.gamma_plus, run.gamma_minus, run_layers(run, lm.n_layers))
    config = GenerateConfig(
        max_new_tokens=run.max_new_tokens, batch_size=settings.ICON2_GENERATE_BATCH, do_sample=run.do_sample,
        temperature=run.temperature, top_p=run.top_p, seed=run.seed,
    )
    stats = StageStats(stage="generate")
    pairs = generate_pairs(
        lm, directions, [r.text for r in rows], dimensions=dims, steering=steering, config=config,
        progress=ChunkProgress(chunk, scale=0.5, heartbeat=beat), stats=stats,
    )

    def write() -> None:
        Pair.objects.bulk_create(
            [
                Pair(
                    run=run, instruction=row, dimension_id=int(p.dimension), chosen=p.chosen, rejected=p.rejected,
                    gamma_plus=p.gamma_plus, gamma_minus=p.gamma_minus, layers=list(p.layers), seed=p.seed,
                    chosen_tokens=p.chosen_tokens, rejected_tokens=p.rejected_tokens,
                )
                for row, p in zip(rows, pairs)
            ]
        )

    return write, stats.as_dict()


def synthesize(chunk, beat) -> Result:
    from icon2engine.synthesis import SynthesisConfig, synthesize as engine_synthesize
    from webapp.jobs.models import Instruction

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
        seen = {t.casefold() for t in run.instructions.values_list("text", flat=True)}
        rows = []
        for j, text in enumerate(result.instructions):
            if text.casefold() not in seen:
                seen.add(text.casefold())
                rows.append(Instruction(run=run, index=chunk.start + j, text=text, source=Instruction.Source.SYNTHESIZED))
        Instruction.objects.bulk_create(rows)

    compute = stats.as_dict()
    compute.update(attempts=report["attempts"], kept=report["passed"], acceptance_rate=report["acceptance_rate"], dropped=report["dropped"])
    return write, compute


def score(chunk, beat) -> Result:
    """Consistency scores of a slice of the run's instructions, on every dimension.

    Chunks store the paper's raw score per dimension; the centred score the filter ranks by is
    that minus the pool's mean raw score for the dimension (exactly the engine's centring, since
    the score is linear in the hidden state), which needs the whole pool, so it is computed
    when the last chunk is in (webapp.jobs.services._finalize_filter).
    """
    from icon2engine.filtering import FilterConfig, score_instructions
    from webapp.jobs.models import DirectionArtifact

    run = chunk.stage.run
    lm = get_model(run.model)
    rows = list(run.instructions.order_by("index"))[chunk.start : chunk.stop]
    artifacts = list(DirectionArtifact.objects.filter(run=run).order_by("dimension_id"))
    directions = {str(a.dimension_id): load_directions(a.path) for a in artifacts}
    for name, ds in directions.items():
        ds.dimension = name
    stats = StageStats(stage="filter")
    scores = score_instructions(
        lm, directions, [r.text for r in rows], FilterConfig(method="paper", keep_fraction=1.0),
        progress=ChunkProgress(chunk, heartbeat=beat), stats=stats,
    )
    paper = scores.paper_scores  # (n, n_dims)

    def write() -> None:
        for i, row in enumerate(rows):
            row.scores = {name: float(paper[i, j]) for j, name in enumerate(scores.dimensions)}
        type(rows[0]).objects.bulk_update(rows, ["scores"]) if rows else None

    return write, stats.as_dict()


def calibrate(chunk, beat) -> Result:
    """Sweep γ on a sample of the kept instructions with the configured judge; the pick becomes
    the run's γ⁺/γ⁻ and the whole table is kept in the stage's metrics for the run page."""
    from icon2engine import Icon2Error
    from icon2engine.calibration import CalibrationConfig, calibrate as engine_calibrate
    from icon2engine.judges import JudgeConfig, make_judge
    from webapp.jobs.models import DirectionArtifact
    from webapp.studio.models import Run, Stage

    run = chunk.stage.run
    lm = get_model(run.model)
    rows = list(run.instructions.filter(kept=True).order_by("rank", "index"))
    artifacts = {a.dimension_id: a for a in DirectionArtifact.objects.filter(run=run)}
    directions = {str(k): load_directions(a.path) for k, a in artifacts.items()}
    fallback = str(min(artifacts))
    dims = [str(r.winner_id) if r.winner_id in artifacts else fallback for r in rows]
    judge = make_judge(JudgeConfig(kind=settings.ICON2_CALIBRATION_JUDGE))
    stats = StageStats(stage="calibrate")
    result = engine_calibrate(
        lm, directions, [r.text for r in rows], judge,
        CalibrationConfig(
            n_instructions=min(settings.ICON2_CALIBRATION_SAMPLE, len(rows)), layers=run_layers(run, lm.n_layers),
            max_new_tokens=min(run.max_new_tokens, 64), seed=run.seed,
        ),
        dimensions=dims, progress=ChunkProgress(chunk, heartbeat=beat), stats=stats,
    )
    summary = result.as_dict()
    summary.pop("examples", None)
    if result.pick is None:
        # Keep the table so the run page can show why, then fail the stage (retryable).
        stage = Stage.objects.get(pk=chunk.stage_id)
        Stage.objects.filter(pk=stage.pk).update(metrics={**stage.metrics, "calibration": summary})
        raise Icon2Error(f"calibration picked no γ: {result.reason}")

    def write() -> None:
        Run.objects.filter(pk=run.pk).update(gamma_plus=result.pick["gamma_plus"], gamma_minus=result.pick["gamma_minus"])
        stage = Stage.objects.get(pk=chunk.stage_id)
        Stage.objects.filter(pk=stage.pk).update(metrics={**stage.metrics, "calibration": summary})

    return write, stats.as_dict()


HANDLERS: dict[str, Callable] = {"calibrate": calibrate, "extract": extract, "synthesize": synthesize, "filter": score, "generate": generate}
