"""Save and load direction sets (safetensors + JSON metadata) and export llama.cpp control vectors."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .directions import DirectionSet
from .errors import InputError
from .files import atomic_path

__all__ = ["save_directions", "load_directions", "export_control_vector_gguf"]

FORMAT = "icon2-directions/1"


def save_directions(directions: DirectionSet, path: str | os.PathLike) -> Path:
    """Write ``directions`` to a ``.safetensors`` file whose header carries the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {
        "format": FORMAT,
        "dimension": directions.dimension,
        "model": directions.model_name,
        "model_revision": directions.model_revision,
        "prompts_hash": directions.prompts_hash,
        "n_layers": directions.n_layers,
        "hidden_size": directions.hidden_size,
        "n_pairs": directions.n_pairs,
        "extra": directions.extra,
    }
    tensors = {
        "vectors": directions.vectors.float().contiguous(),
        "mean_norm": torch.tensor(directions.mean_norm, dtype=torch.float32),
        "explained_variance": torch.tensor(directions.explained_variance, dtype=torch.float32),
        "separation_accuracy": torch.tensor(directions.separation_accuracy, dtype=torch.float32),
        "mean_diff_cosine": torch.tensor(directions.mean_diff_cosine, dtype=torch.float32),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"icon2": json.dumps(meta)})
    return path


def load_directions(path: str | os.PathLike) -> DirectionSet:
    """Read a file written by :func:`save_directions`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise InputError(f"direction file {path} does not exist; run 'icon2 extract' first")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("icon2")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise InputError(f"{path} is not a readable safetensors file: {exc}") from None
    if not raw:
        raise InputError(f"{path} has no Icon² metadata; it was not written by icon2 extract")
    meta = json.loads(raw)
    return DirectionSet(
        dimension=meta["dimension"],
        vectors=tensors["vectors"],
        mean_norm=tensors["mean_norm"].tolist(),
        explained_variance=tensors["explained_variance"].tolist(),
        separation_accuracy=tensors["separation_accuracy"].tolist(),
        mean_diff_cosine=tensors["mean_diff_cosine"].tolist(),
        model_name=meta.get("model", ""),
        model_revision=meta.get("model_revision", ""),
        prompts_hash=meta.get("prompts_hash", ""),
        n_pairs=int(meta.get("n_pairs", 0)),
        extra=meta.get("extra", {}),
    )


def export_control_vector_gguf(directions: DirectionSet, path: str | os.PathLike, model_hint: str = "llama") -> Path:
    """Write the llama.cpp control-vector GGUF layout (also read by repeng).

    llama.cpp applies tensor ``direction.N`` to the output of decoder block N (0-based) and
    has no slot for block 0, so blocks 1..n-1 are written. Each vector is the unit direction
    times the layer's mean hidden-state norm, so ``--control-vector-scaled file 0.05`` means
    the same as γ = 0.05 here.
    """
    import gguf

    path = Path(path)
    with atomic_path(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), "controlvector")
        writer.add_string("controlvector.model_hint", model_hint)
        writer.add_uint32("controlvector.layer_count", directions.n_layers - 1)
        for layer in range(1, directions.n_layers):
            vec = (directions.vectors[layer] * directions.mean_norm[layer]).float().numpy()
            writer.add_tensor(f"direction.{layer}", vec)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path
