"""DPO training on the tiny random model: structure, bad input, stop and resume."""
from __future__ import annotations

import json

import pytest
import torch

from icon2engine.errors import ConfigError, InputError, StopRequested
from icon2engine.progress import RecordingProgress
from icon2engine.training import TrainConfig, load_trained, train_dpo

PAIRS = [
    {"instruction": f"Describe a rainy Monday {i}.", "chosen": "What a lovely day, sunny and bright!",
     "rejected": "The sea is grey and the fox is lazy."}
    for i in range(8)
]
FAST = dict(max_steps=1, batch_size=2, max_length=64, learning_rate=1e-2, lora_r=4)


class StopAfter(RecordingProgress):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def advance(self, n: int = 1, **metrics) -> None:
        super().advance(n, **metrics)
        if self.done >= self.steps:
            raise StopRequested("stop")


def test_one_lora_step_changes_the_adapter_and_leaves_base_weights_untouched(tiny_lm, tmp_path):
    base = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    progress = RecordingProgress()
    res = train_dpo(tiny_lm, PAIRS, tmp_path / "run", TrainConfig(**FAST), progress=progress)
    assert res.steps == 1 and not res.stopped
    # the caller's model is untouched
    for k, v in tiny_lm.model.state_dict().items():
        assert torch.equal(v, base[k]), k
    # the adapter moved away from its init (LoRA B starts at zero)
    from safetensors.torch import load_file

    adapter = load_file(str(res.model_dir / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)
    # the merged model differs from the base only through the adapter
    merged = res.lm.model.state_dict()
    assert any(not torch.equal(merged[k], base[k]) for k in base if k.endswith("proj.weight"))
    events = [e for e in progress.events if e[0] == "advance"]
    assert len(events) == 1
    for key in ("loss", "rewards_chosen", "rewards_rejected", "margins", "accuracy"):
        assert key in events[0][1]
    for name in ("train_config.json", "train_log.jsonl", "README.md", "stats.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert "Icon² preference pairs" in (tmp_path / "run" / "README.md").read_text()
    assert json.loads((tmp_path / "run" / "stats.json").read_text())["wall_s"] > 0
    reloaded = load_trained(tiny_lm, tmp_path / "run")
    for k, v in reloaded.model.state_dict().items():
        assert torch.allclose(v, merged[k], atol=1e-6), k


def test_lora_base_layer_weights_do_not_move_inside_the_peft_model(tiny_lm, tmp_path):
    # the merged model = base + B·A; after unmerging B·A = 0 would give back the base exactly
    res = train_dpo(tiny_lm, PAIRS, tmp_path / "run", TrainConfig(**FAST))
    from peft import PeftModel
    import copy

    peft = PeftModel.from_pretrained(copy.deepcopy(tiny_lm.model), str(res.model_dir))
    base = tiny_lm.model.state_dict()
    for name, tensor in peft.named_parameters():
        if "base_layer" in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(tensor, base[key]), name


def test_full_fine_tuning_changes_the_weights(tiny_lm, tmp_path):
    base = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    res = train_dpo(tiny_lm, PAIRS, tmp_path / "run", TrainConfig(method="full", **FAST))
    assert (res.model_dir / "config.json").exists()
    changed = [k for k, v in res.lm.model.state_dict().items() if not torch.equal(v, base[k])]
    assert changed
    assert all(torch.equal(v, base[k]) for k, v in tiny_lm.model.state_dict().items())


def test_stop_keeps_a_checkpoint_and_resume_continues_from_it(tiny_lm, tmp_path):
    cfg = TrainConfig(**{**FAST, "max_steps": 3, "save_steps": 100})
    res = train_dpo(tiny_lm, PAIRS, tmp_path / "run", cfg, progress=StopAfter(1))
    assert res.stopped and res.steps == 1 and res.checkpoint and res.checkpoint.endswith("checkpoint-1")
    assert not (tmp_path / "run" / "adapter").exists()
    progress = RecordingProgress()
    res2 = train_dpo(tiny_lm, PAIRS, tmp_path / "run", cfg, progress=progress)
    assert not res2.stopped and res2.steps == 3
    assert progress.events[1][1].get("resumed_from") == 1
    assert len(res2.log) == 2  # steps 2 and 3 were run this time
    assert (tmp_path / "run" / "adapter").is_dir()


def test_no_pairs_is_an_error_before_training(tiny_lm, tmp_path):
    with pytest.raises(InputError, match="no pairs"):
        train_dpo(tiny_lm, [], tmp_path / "run", TrainConfig(**FAST))


def test_identical_chosen_and_rejected_is_an_error(tiny_lm, tmp_path):
    bad = PAIRS[:2] + [{"instruction": "x", "chosen": "same text", "rejected": "same text"}]
    with pytest.raises(InputError, match=r"identical.*#3"):
        train_dpo(tiny_lm, bad, tmp_path / "run", TrainConfig(**FAST))


def test_a_prompt_over_max_length_is_an_error(tiny_lm, tmp_path):
    bad = PAIRS[:2] + [{"instruction": "word " * 200, "chosen": "a", "rejected": "b"}]
    with pytest.raises(InputError, match=r"pair #3.*max_length=64"):
        train_dpo(tiny_lm, bad, tmp_path / "run", TrainConfig(**FAST))


def test_trl_conversational_rows_are_accepted(tiny_lm, tmp_path):
    from icon2engine.export import pair_record

    rows = [pair_record({**p, "dimension": "d", "gamma_plus": 0.05, "gamma_minus": -0.05, "layers": [1], "seed": 0},
                        model="m", model_revision="r") for p in PAIRS]
    res = train_dpo(tiny_lm, rows, tmp_path / "run", TrainConfig(**FAST))
    assert res.steps == 1


@pytest.mark.parametrize("kwargs, fix", [
    ({"method": "qlora"}, "lora' or 'full"), ({"beta": 0}, "beta"), ({"learning_rate": 1.0}, "learning_rate"),
    ({"batch_size": 0}, "batch_size"), ({"max_length": 8}, "max_length"), ({"max_steps": 0}, "max_steps"),
])
def test_bad_settings_say_what_to_change(kwargs, fix):
    with pytest.raises(ConfigError, match=fix):
        TrainConfig(**kwargs)


def test_paper_settings():
    cfg = TrainConfig.paper()
    assert (cfg.method, cfg.beta, cfg.learning_rate, cfg.epochs) == ("full", 0.1, 5e-7, 1.0)


def test_out_of_memory_stops_cleanly_and_keeps_the_last_checkpoint(tiny_lm, tmp_path, monkeypatch):
    from trl import DPOTrainer

    from icon2engine.training import TrainingError

    real_step = DPOTrainer.training_step

    def step(self, *args, **kwargs):
        if self.state.global_step >= 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(DPOTrainer, "training_step", step)
    cfg = TrainConfig(**{**FAST, "max_steps": 3, "save_steps": 1})
    with pytest.raises(TrainingError, match=r"out of memory.*lower batch_size or max_length.*checkpoint-1") as info:
        train_dpo(tiny_lm, PAIRS, tmp_path / "run", cfg)
    assert info.value.checkpoint.endswith("checkpoint-1")
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-1").is_dir()
    monkeypatch.setattr(DPOTrainer, "training_step", real_step)
    res = train_dpo(tiny_lm, PAIRS, tmp_path / "run", cfg)
    assert res.steps == 3 and not res.stopped
