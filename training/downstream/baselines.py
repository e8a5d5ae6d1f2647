"""Baselines beside an evaluated encoder: the same architecture with random weights, and raw pixels.

``python -m training evaluate --baselines`` runs the same protocol on both and prints the three rows side by
side, as the demo does. The random-init weights depend on seed 0 only (``torch.random.fork_rng``), not on what
ran before; raw pixels are scaled to [0, 1], normalised with the encoder's input statistics and flattened.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import torch
from torch import Tensor

import zoo

RAW_PIXELS = "raw pixels (normalised, flattened)"
RANDOM_INIT = "random-init encoder (same architecture)"


def random_init_encoder(spec: str, registry: Optional[str] = None, seed: int = 0) -> zoo.Encoder:
    """``zoo.load_encoder(spec, pretrained=False)`` with weights drawn from ``seed`` alone (the global RNG is
    forked, so callers' random streams are left as they were)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return zoo.load_encoder(spec, pretrained=False, registry=registry)


def raw_pixels(encoder: zoo.Encoder) -> Callable[[Tensor], Tensor]:
    """``images -> normalised, flattened pixels``, with the encoder's per-channel mean/std when the channel
    counts agree, else its first channel's statistics for every channel."""
    config = encoder.zoo_config["input"]
    mean, std = torch.tensor(config["mean"]), torch.tensor(config["std"])

    def encode(images: Tensor) -> Tensor:
        x = images.float() / 255
        if x.dim() == 4 and x.shape[1] == len(mean):
            x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
        else:
            x = (x - mean[0]) / std[0]
        return x.flatten(1)

    return encode


def row(representation: str, result: Dict[str, Any]) -> Dict[str, Any]:
    """One table row from an ``evaluate`` command result."""
    out = {"representation": representation, "protocol": result["protocol"], "top1": result["top1"]}
    for key in ("dims", "top5", "val_top1"):
        if key in result:
            out[key] = result[key]
    return out


def table(rows: List[Dict[str, Any]]) -> str:
    """A Markdown table of ``row``s: representation, protocol, dims, test top-1 (and top-5 when measured)."""
    top5 = any("top5" in r for r in rows)
    lines = ["| representation | protocol | dims | top-1 |" + (" top-5 |" if top5 else ""),
             "|---|---|---:|---:|" + ("---:|" if top5 else "")]
    for r in rows:
        cells = [r["representation"], r["protocol"], str(r.get("dims", "")), f"{r['top1']:.4f}"]
        if top5:
            cells.append(f"{r['top5']:.4f}" if "top5" in r else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
