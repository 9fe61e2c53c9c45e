"""Run one playground request: claim it, find the dimension's direction, stream three responses.

The direction comes from the run's extraction when it has one; before a run is launched it is
extracted here from the dimension's prompt pairs (a few seconds on the embedded model) and kept
in memory for the next request.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time



log = logging.getLogger(__name__)

STORE_EVERY_S = 0.5  # the texts so far are written to the database this often; pages get every step
_extracted: dict[str, object] = {}


def _direction(probe, lm):
    from icon2engine import ExtractConfig, default_feature_instructions, extract_directions, load_directions
    from webapp.jobs.models import DirectionArtifact
    from worker.stages import engine_dimension

    artifact = DirectionArtifact.objects.filter(run=probe.run, dimension=probe.dimension).first()
    if artifact is not None:
        try:
            return load_directions(artifact.path), "the run's extracted direction"
        except Exception as exc:  # the file went missing: extract again below
            log.warning("direction file %s unreadable (%s); extracting again", artifact.path, exc)
    spec = engine_dimension(probe.dimension)
    pairs = [(p.positive, p.negative) for p in spec.prompt_pairs]
    key = hashlib.sha256(json.dumps([probe.run.model_id, pairs, list(spec.feature_instructions), probe.run.seed]).encode()).hexdigest()
    if key not in _extracted:
        if len(_extracted) >= 16:  # a bounded cache: drop the oldest
            _extracted.pop(next(iter(_extracted)))
        feats = list(spec.feature_instructions) or default_feature_instructions()
        _extracted[key] = extract_directions(lm, spec, feats, ExtractConfig(seed=probe.run.seed))
    return _extracted[key], "a direction extracted just now from the dimension's prompts"


def run_probe(probe_id: int) -> None:
    from webapp.jobs import probes
    from worker.runner import run_claimed

    run_claimed("playground request", probe_id, claim=lambda pk, worker: probes.probe_claim(probe_id=pk, worker=worker),
                heartbeat=lambda probe: probes.probe_heartbeat(probe=probe),
                fail=lambda probe, error: probes.probe_fail(probe=probe, error=error), body=_probe_answer)


def _probe_answer(probe) -> None:
    from icon2engine.playground import compare_steering
    from webapp.jobs import probes
    from worker.model_cache import get_model

    lm = get_model(probe.run.model)
    if not probe.run.directions.filter(dimension=probe.dimension).exists():
        probes.probe_progress(probe=probe, message="Extracting the direction from the dimension's prompts…")
    direction, source = _direction(probe, lm)
    probes.probe_progress(probe=probe, message=f"Generating with {source}…")
    texts = {side: "" for side in ("unsteered", "plus", "minus")}
    last_store = [0.0]

    def on_update(update: dict[str, str]) -> None:
        texts.update(update)
        now = time.monotonic()
        store = now - last_store[0] >= STORE_EVERY_S
        if store:
            last_store[0] = now
        probes.probe_progress(probe=probe, outputs=dict(texts), store=store)

    layers = None if probe.layer_start is None else tuple(range(probe.layer_start, probe.layer_end + 1))
    outputs = compare_steering(
        lm, direction, probe.instruction, gamma=probe.gamma, layers=layers,
        max_new_tokens=probe.max_new_tokens, on_update=on_update,
    )
    probes.probe_finish(probe=probe, outputs=outputs)
