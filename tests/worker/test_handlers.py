"""Every stage handler on the real tiny model, in process (no broker): each loads its rows through
a selector, calls the engine, and stores its output through the services (webapp.jobs.stores and
the locked stage_metrics_merge) when its chunk completes."""
from __future__ import annotations

import json
from pathlib import Path

from django.core.files.base import ContentFile

from tests.worker.test_judge_failure import _drain
from webapp.jobs.models import Chunk, DirectionArtifact, Instruction
from webapp.studio.models import Run, Stage
from webapp.studio.services import run_create, run_launch


def _run(tiny, django_capture_on_commit_callbacks, **config) -> Run:
    owner, project, dim, model = tiny
    n = config.pop("n", 16)
    upload = ContentFile("\n".join(f"Tell me about thing number {i}." for i in range(n)).encode(), name="pool.txt")
    run = run_create(project=project, created_by=owner, model=model, dimensions=[dim], config={
        "name": "R", "instruction_source": "upload", "instructions_file": upload, "keep_fraction": 0.5,
        "max_new_tokens": 6, "quality_gate": False, "require_review": False, **config})
    with django_capture_on_commit_callbacks(execute=True):
        run_launch(run=run, actor=owner)
    with django_capture_on_commit_callbacks(execute=True):
        _drain(run)
    return Run.objects.get(pk=run.pk)


def test_extract_score_generate_train_and_evaluate_store_what_they_computed(tiny, django_capture_on_commit_callbacks):
    run = _run(tiny, django_capture_on_commit_callbacks, gamma_plus=1.0, gamma_minus=-1.0, max_new_tokens=8,
               pairing="unsteered_rejected")
    stages = {s.kind: s for s in run.stages.all()}
    assert all(s.status in (Stage.Status.SUCCEEDED, Stage.Status.SKIPPED) for s in stages.values()), \
        {k: (s.status, s.error[:300]) for k, s in stages.items() if s.status != "succeeded"}
    assert run.status == Run.Status.SUCCEEDED

    # extract: one direction file per dimension, with its per-layer diagnostics
    (artifact,) = DirectionArtifact.objects.filter(run=run)
    assert Path(artifact.path).exists() and Path(artifact.gguf_path).exists() and artifact.diagnostics
    # filter (score chunks, then the ranking): every instruction scored, the top half kept, ranks 0..15
    rows = list(run.instructions.order_by("rank"))
    assert all(r.scores and r.consistency is not None for r in rows) and sum(r.kept for r in rows) == 8
    assert [r.rank for r in rows] == list(range(16)) and stages["filter"].metrics["kept"] == 8
    # generate: a pair per kept instruction, on those instructions only
    assert set(run.pairs.values_list("instruction_id", flat=True)) == {r.pk for r in rows if r.kept}
    # ... steered as the run asked: only the chosen side (its rejected side is the unsteered answer)
    assert set(run.pairs.values_list("gamma_plus", "gamma_minus")) == {(1.0, 0.0)}
    # train: the held-out split chose the filter's rejects, by id; the adapter is on disk
    train = stages["train"].metrics
    assert sorted(train["held_out_instructions"]) == sorted(r.pk for r in rows if not r.kept)
    assert train["reserved_pairs"] == [] and train["pairs"] == 8 and Path(train["output_dir"]).exists()
    # evaluate: trained against base on those held-out instructions
    evaluation = stages["evaluate"].metrics["evaluation"]
    assert evaluation["seconds_per_instruction"] > 0 and evaluation["n"] == 8


def test_calibration_that_picks_no_gamma_keeps_its_table_with_the_failure(tiny, django_capture_on_commit_callbacks, settings):
    """On the random tiny model no γ keeps the chosen side coherent, so calibration fails; its table
    is stored by the chunk's failure (one transaction), for the run page to show why."""
    settings.ICON2_CALIBRATION_SAMPLE = 3
    run = _run(tiny, django_capture_on_commit_callbacks, n=8, calibrate=True)
    stage = run.stages.get(kind="calibrate")
    assert stage.status == Stage.Status.FAILED and "calibration picked no γ" in stage.error
    table = stage.metrics["calibration"]["table"]
    assert table and stage.metrics["calibration"]["n_instructions"] == 3
    assert Chunk.objects.get(stage=stage).status == Chunk.Status.FAILED and run.status == Run.Status.FAILED


def test_calibration_reads_only_the_sample_it_sweeps(tiny, django_capture_on_commit_callbacks, settings, monkeypatch):
    """The worker asks the engine which positions it would sample and reads only those rows; the
    engine then sees exactly the sample it would have drawn from the whole kept pool."""
    from icon2engine import calibration
    from icon2engine.calibration import sample_positions

    settings.ICON2_CALIBRATION_SAMPLE = 3
    seen = []
    real = calibration.calibrate
    monkeypatch.setattr(calibration, "calibrate", lambda lm, d, pool, *a, **k: seen.append(list(pool)) or real(lm, d, pool, *a, **k))
    run = _run(tiny, django_capture_on_commit_callbacks, n=24, calibrate=True)
    kept = list(run.instructions.filter(kept=True).order_by("rank").values_list("text", flat=True))
    assert len(kept) == 12 and seen == [[kept[i] for i in sample_positions(12, 3, run.seed)]]


def test_synthesised_instructions_are_stored_once(tiny):
    """The synthesis handler's store: a chunk's instructions at its indexes, minus what the run
    already has (compared case-insensitively in the database, never by reading the pool). The
    handler itself needs a chat template the tiny model lacks; it runs on the embedded model in
    tests/integration/test_run_end_to_end.py."""
    from webapp.jobs.stores import instructions_synthesized_store

    owner, project, dim, model = tiny
    run = run_create(project=project, created_by=owner, model=model, dimensions=[dim], config={
        "name": "S", "instruction_source": "synthesize", "n_instructions": 8, "require_review": False})
    from webapp.jobs.models import text_key

    Instruction.objects.create(run=run, index=0, text="Explain tides.", folded=text_key("Explain tides."), source="synthesized")
    added = instructions_synthesized_store(run_id=run.pk, start=8, texts=["EXPLAIN TIDES.", "Name a bird.", "name a BIRD.", "Why?"])
    assert added == 2
    assert list(run.instructions.filter(index__gte=8).order_by("index").values_list("index", "text")) == [(9, "Name a bird."), (11, "Why?")]


def test_a_reviewed_run_trains_on_the_file_review_done_wrote(tiny, django_capture_on_commit_callbacks, settings):
    from webapp.jobs.selectors import held_out_split, training_rows
    from webapp.review.services import review_finish

    run = _run(tiny, django_capture_on_commit_callbacks, require_review=True)
    assert run.status == Run.Status.PAUSED
    review_finish(run=run)  # nobody reviewed: the gate keeps no pair
    run.refresh_from_db()
    review = run.stages.get(kind="review").metrics
    rows, meta = training_rows(run=run)
    path = Path(settings.MEDIA_ROOT) / review["dataset_jsonl"]
    assert rows == [json.loads(line) for line in path.read_text().splitlines() if line.strip()] and meta["kept"] == review["kept"]
    path.write_text(json.dumps({"prompt": "only this", "chosen": "a", "rejected": "b", "pair_id": -1}) + "\n")
    assert training_rows(run=run)[0] == [{"prompt": "only this", "chosen": "a", "rejected": "b", "pair_id": -1}]
    split = held_out_split(run=run, limit=3)
    assert len(split.eval_instructions) == 3 and split.reserved_pairs == []
