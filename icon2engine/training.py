"""DPO training on Icon² pairs with TRL's ``DPOTrainer``: LoRA (PEFT) by default, full fine-tuning as an option.

The caller's model is never changed: training runs on a copy, and the result is a new
:class:`~icon2engine.models.LoadedModel` (for LoRA, the adapter merged into the copy).

Defaults are chosen for the embedded 135M model on a CPU, not TRL's GPU defaults (TRL turns on
bf16 and gradient checkpointing and uses lr 1e-6). The paper's settings for full fine-tuning of
7–8B models are β 0.1, lr 5e-7, 1 epoch (``TrainConfig.paper()``).
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .chat import chat_template_for
from .config import TrainConfig  # the config lives in the torch-free icon2engine.config
from .formats import trl_row
from .errors import Icon2Error, InputError, StopRequested
from .generation import SteeredPair
from .layers import find_decoder_layers
from .models import LoadedModel
from .progress import NullProgress, Progress
from .stats import StageStats

__all__ = ["TrainConfig", "TrainResult", "TrainingError", "prepare_pairs", "training_tokenizer", "train_dpo", "load_trained"]

METRICS = {  # TRL's log keys -> the names the progress protocol reports
    "loss": "loss",
    "rewards/chosen": "rewards_chosen",
    "rewards/rejected": "rewards_rejected",
    "rewards/margins": "margins",
    "rewards/accuracies": "accuracy",
}


class TrainingError(Icon2Error):
    """Training failed part-way (e.g. out of memory); ``checkpoint`` is the last one kept, if any."""

    def __init__(self, message: str, checkpoint: str | None = None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    """What training left behind. ``lm`` is the trained model (adapter merged), ready to generate."""

    output_dir: Path
    model_dir: Path
    steps: int
    stopped: bool
    log: list[dict]
    stats: StageStats
    lm: LoadedModel | None = None
    checkpoint: str | None = None


def _as_row(item: SteeredPair | Mapping) -> dict:
    if isinstance(item, SteeredPair):
        item = item.as_dict()
    if "prompt" in item:
        prompt, chosen, rejected = item["prompt"], item["chosen"], item["rejected"]
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        if isinstance(chosen, str):
            chosen = [{"role": "assistant", "content": chosen}]
        if isinstance(rejected, str):
            rejected = [{"role": "assistant", "content": rejected}]
    elif "instruction" in item:
        row = trl_row(item["instruction"], item["chosen"], item["rejected"])
        prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
    else:
        raise InputError("a pair needs prompt/chosen/rejected (TRL format) or instruction/chosen/rejected")
    return {"prompt": list(prompt), "chosen": list(chosen), "rejected": list(rejected)}


def _text(messages: Sequence[Mapping]) -> str:
    return "".join(str(m.get("content", "")) for m in messages)


def prepare_pairs(pairs: Sequence[SteeredPair | Mapping], tokenizer: Any, max_length: int) -> list[dict]:
    """Check pairs and return them as TRL conversational rows (prompt/chosen/rejected message lists only).

    Raises :class:`InputError` before any training when there are no pairs, when a pair's chosen
    and rejected are identical (it teaches nothing), or when a prompt alone fills ``max_length``
    (TRL would silently drop it).
    """
    rows = [_as_row(p) for p in pairs]
    if not rows:
        raise InputError("the dataset has no pairs; generate or accept some pairs before training")
    same = [i + 1 for i, r in enumerate(rows) if _text(r["chosen"]).strip() == _text(r["rejected"]).strip()]
    if same:
        shown = ", ".join(map(str, same[:10])) + (" …" if len(same) > 10 else "")
        raise InputError(
            f"{len(same)} pair(s) have identical chosen and rejected responses (#{shown}); remove them or "
            "regenerate them with a larger |γ|"
        )
    empty = [i + 1 for i, r in enumerate(rows) if not _text(r["chosen"]).strip() or not _text(r["rejected"]).strip()]
    if empty:
        raise InputError(f"pair(s) #{', #'.join(map(str, empty[:10]))} have an empty response; remove them")
    template = chat_template_for(tokenizer)
    for i, r in enumerate(rows):
        ids = tokenizer.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True, chat_template=template)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        if len(ids) >= max_length:
            raise InputError(
                f"the prompt of pair #{i + 1} takes {len(ids)} tokens, which fills max_length={max_length}; "
                "raise max_length or remove that pair"
            )
    return rows


def training_tokenizer(tokenizer: Any) -> Any:
    """A copy of ``tokenizer`` whose chat template is :func:`~icon2engine.chat.chat_template_for`'s.

    TRL renders conversational rows with the tokenizer's own template; with this one it renders
    them as every other path does (the fallback for a model without a template, the model's BOS
    rule), so DPO trains on the prompt ids generation saw.
    """
    copied = copy.deepcopy(tokenizer)
    copied.chat_template = chat_template_for(tokenizer)
    return copied


def _latest_checkpoint(folder: Path) -> str | None:
    if not folder.is_dir():
        return None
    found = [p for p in folder.iterdir() if p.name.startswith("checkpoint-") and p.name.split("-")[-1].isdigit()]
    return str(max(found, key=lambda p: int(p.name.split("-")[-1]))) if found else None


def _progress_callback(progress: Progress, log: list[dict], log_path: Path):
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Reports every optimiser step; a StopRequested becomes save-then-stop between steps."""

        def __init__(self) -> None:
            self.stopped = False

        def on_train_begin(self, args, state, control, **kwargs):
            progress.start("train", int(state.max_steps) or None)
            if state.global_step:
                try:
                    progress.advance(int(state.global_step), resumed_from=int(state.global_step))
                except StopRequested:
                    self.stopped = True
                    control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" not in logs:  # the end-of-training summary
                return control
            metrics = {v: float(logs[k]) for k, v in METRICS.items() if k in logs}
            entry = {"step": int(state.global_step), **metrics, "num_tokens": float(logs.get("num_tokens", 0))}
            log.append(entry)
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
            try:
                progress.advance(1, **metrics)
            except StopRequested:
                self.stopped = True
                control.should_save = True
                control.should_training_stop = True
            return control

    return ProgressCallback()


def _model_card(out: Path, lm: LoadedModel, config: TrainConfig, *, dataset: str, run: str, n_pairs: int,
                steps: int, log: list[dict]) -> str:
    last = log[-1] if log else {}
    rows = "\n".join(f"| {k} | {v} |" for k, v in asdict(config).items())
    final = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "step" and isinstance(v, float))
    return f"""---
library_name: {"peft" if config.method == "lora" else "transformers"}
base_model: {lm.name}
tags: [dpo, trl, icon2]
---

# {run}

DPO ({"LoRA adapter" if config.method == "lora" else "full fine-tune"}) of `{lm.name}` (revision
`{lm.revision}`) on **{dataset}** ({n_pairs} pairs made with Icon², arXiv 2509.05605), trained with
TRL's `DPOTrainer` on {_dt.date.today().isoformat()}: {steps} optimiser steps.

Last logged step: {final or "none"}.

| setting | value |
|---|---|
{rows}

The training log is `train_log.jsonl` (one line per step: loss, rewards_chosen, rewards_rejected,
margins, accuracy); the settings are `train_config.json`.
"""


def train_dpo(
    lm: LoadedModel,
    pairs: Sequence[SteeredPair | Mapping],
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    dataset_name: str = "Icon² preference pairs",
    run_name: str | None = None,
    resume: bool = True,
    progress: Progress | None = None,
    stats: StageStats | None = None,
) -> TrainResult:
    """Train ``lm`` with DPO on ``pairs``; ``lm`` itself is left unchanged.

    Args:
        lm: the base model (also the reference model).
        pairs: :class:`SteeredPair` objects, their dicts, or TRL conversational rows
            (``prompt``/``chosen``/``rejected`` message lists, as :func:`export_dataset` writes them).
        out_dir: gets ``checkpoints/``, ``adapter/`` (LoRA) or ``model/`` (full), ``train_config.json``,
            ``train_log.jsonl``, ``stats.json`` and ``README.md`` (the model card).
        resume: continue from the newest checkpoint in ``out_dir/checkpoints`` if there is one.
        progress: gets ``advance(1, loss=…, rewards_chosen=…, rewards_rejected=…, margins=…, accuracy=…)``
            each step; raising :class:`StopRequested` there saves a checkpoint and stops.

    Returns:
        :class:`TrainResult`; ``stopped`` is true when a stop was requested (the model is then
        not saved as final, the checkpoint is kept for resuming).

    Example:
        >>> res = train_dpo(lm, pairs, "runs/opt", TrainConfig(max_steps=32, max_length=128))
        >>> res.lm.model.generate(...)
    """
    config = config or TrainConfig()
    progress = progress or NullProgress()
    stats = stats if stats is not None else StageStats(stage="train")
    rows = prepare_pairs(pairs, lm.tokenizer, int(config.max_length))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    run_name = run_name or out.name

    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    on_cpu = lm.device.type == "cpu"
    args = DPOConfig(
        output_dir=str(ckpt_dir),
        beta=float(config.beta),
        learning_rate=float(config.learning_rate),
        num_train_epochs=float(config.epochs),
        max_steps=int(config.max_steps),
        per_device_train_batch_size=int(config.batch_size),
        gradient_accumulation_steps=int(config.grad_accum),
        max_length=int(config.max_length),
        warmup_steps=int(config.warmup_steps),
        lr_scheduler_type=config.lr_scheduler,
        gradient_checkpointing=bool(config.gradient_checkpointing),
        bf16=bool(config.bf16),
        use_cpu=on_cpu,
        logging_steps=1,
        save_strategy="steps",
        save_steps=int(config.save_steps),
        save_total_limit=int(config.save_total_limit),
        report_to="none",
        disable_tqdm=True,
        seed=int(config.seed),
        dataloader_num_workers=0,
        run_name=run_name,
    )
    # Train a copy: the caller's model stays the base (and the reference for evaluation).
    model = copy.deepcopy(lm.model).train()
    ref_model = None
    peft_config = None
    if config.method == "lora":
        from peft import LoraConfig

        targets = config.lora_targets.strip()
        peft_config = LoraConfig(
            r=int(config.lora_r), lora_alpha=int(config.lora_alpha), lora_dropout=float(config.lora_dropout),
            target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()],
            task_type="CAUSAL_LM",
        )
    else:
        # TRL would reload the reference from a hub id; give it a frozen copy instead.
        ref_model = copy.deepcopy(lm.model).eval()
    log: list[dict] = []
    log_path = out / "train_log.jsonl"
    callback = _progress_callback(progress, log, log_path)
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=training_tokenizer(lm.tokenizer),
        peft_config=peft_config,
        callbacks=[callback],
    )
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # progress goes through ``progress``, not print()
    resume_from = _latest_checkpoint(ckpt_dir) if resume else None
    if resume_from is None and log_path.exists():
        log_path.unlink()
    (out / "train_config.json").write_text(json.dumps(
        {**asdict(config), "base_model": lm.name, "base_revision": lm.revision, "dataset": dataset_name,
         "run": run_name, "pairs": len(rows)}, indent=2))
    t0 = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    except torch.OutOfMemoryError as exc:
        last = _latest_checkpoint(ckpt_dir)
        raise TrainingError(
            f"out of memory while training ({exc.__class__.__name__}); lower batch_size or max_length "
            f"(raise grad_accum to keep the effective batch){'; resume from ' + last if last else ''}", last
        ) from None
    except RuntimeError as exc:
        if "out of memory" not in str(exc).lower():
            raise
        last = _latest_checkpoint(ckpt_dir)
        raise TrainingError(
            f"out of memory while training; lower batch_size or max_length{'; resume from ' + last if last else ''}", last
        ) from None
    finally:
        progress.finish()
        stats.add_time(time.perf_counter() - t0, str(lm.device))
        if log:
            stats.tokens_in = int(log[-1].get("num_tokens", 0))
        (out / "stats.json").write_text(json.dumps(stats.as_dict()))
    steps = int(trainer.state.global_step)
    if callback.stopped:
        return TrainResult(out, ckpt_dir, steps, True, log, stats, checkpoint=_latest_checkpoint(ckpt_dir))
    trained = trainer.model
    if config.method == "lora":
        model_dir = out / "adapter"
        trained.save_pretrained(str(model_dir))
        trained = trained.merge_and_unload()
    else:
        model_dir = out / "model"
        trained.save_pretrained(str(model_dir))
    lm.tokenizer.save_pretrained(str(model_dir))
    (out / "README.md").write_text(
        _model_card(out, lm, config, dataset=dataset_name, run=run_name, n_pairs=len(rows), steps=steps, log=log),
        encoding="utf-8",
    )
    return TrainResult(out, model_dir, steps, False, log, stats, lm=_wrap(lm, trained, run_name),
                       checkpoint=_latest_checkpoint(ckpt_dir))


def _wrap(base: LoadedModel, model: torch.nn.Module, name: str) -> LoadedModel:
    model.eval()
    model.config.use_cache = True  # the trainer turns the KV cache off; generation needs it back
    attr, layers = find_decoder_layers(model, base.layers_attr)
    return LoadedModel(model=model, tokenizer=base.tokenizer, name=f"{base.name}+{name}", revision="trained",
                       layers_attr=attr, layers=layers)


def load_trained(base: LoadedModel, out_dir: str | os.PathLike) -> LoadedModel:
    """Load what :func:`train_dpo` saved in ``out_dir``: the adapter merged into a copy of ``base``, or the full model.

    Example:
        >>> trained = load_trained(load_model("embedded"), "runs/opt")
    """
    out = Path(out_dir)
    if (out / "adapter").is_dir():
        from peft import PeftModel

        model = PeftModel.from_pretrained(copy.deepcopy(base.model), str(out / "adapter")).merge_and_unload()
    elif (out / "model").is_dir():
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(out / "model"), dtype=base.model.dtype).to(base.device)
    else:
        raise InputError(f"{out} has neither adapter/ nor model/; run 'icon2 train --out {out}' first (or let it finish)")
    return _wrap(base, model, out.name)
