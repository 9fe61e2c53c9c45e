"""Direction-extraction throughput on the embedded model: contrastive pairs per second,
batched (ExtractConfig's default, 64 prompts per forward pass, in token order so a batch shares its system prompt, which
runs once) against one pair per forward pass (its positive and negative prompt, whole), on the
same instructions in one run. Extraction runs the transformer without its LM head (no logits).
Last line: extract_pairs_per_s=<batched pairs/s> batched_vs_single=<ratio>.
"""
from __future__ import annotations

import _common  # noqa: F401
from _common import timed

import torch

from icon2engine import ExtractConfig, default_feature_instructions, extract_directions, get_preset, load_model


def main() -> None:
    lm = load_model("embedded")
    dim = get_preset("helpfulness")
    feats = default_feature_instructions()[:32]
    extract_directions(lm, dim, feats[:2], ExtractConfig(batch_size=4))  # warm-up
    t_batched, ds_b = timed(lambda: extract_directions(lm, dim, feats, ExtractConfig()), repeats=3)
    t_single, ds_s = timed(lambda: extract_directions(lm, dim, feats, ExtractConfig(batch_size=2, share_prefix=False)), repeats=1)
    cos = torch.nn.functional.cosine_similarity(ds_b.vectors, ds_s.vectors, dim=1).min().item()
    pairs = len(feats)
    print(f"model={lm.name} pairs={pairs} threads={torch.get_num_threads()}")
    print(f"batched ({ExtractConfig().batch_size} prompts/pass): {pairs / t_batched:.1f} pairs/s; one pair at a time: {pairs / t_single:.1f} pairs/s")
    print(f"same vectors either way: min cosine over layers = {cos:.5f}")
    print(f"extract_pairs_per_s={pairs / t_batched:.1f} batched_vs_single={t_single / t_batched:.2f}")


if __name__ == "__main__":
    main()
