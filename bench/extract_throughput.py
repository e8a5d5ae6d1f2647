"""Frozen-feature extraction against a bare forward loop over the same images (a benchmark, not a test).

``python bench/extract_throughput.py [--split test] [--repeats 5] [--out bench/results/extract_throughput.json]``

Target: ``training.downstream.frozen.extract_features`` (what every evaluation runs: the datamodule's loader,
the encoder's eval transform, channels-last, the progress reporter, ``.float().cpu()``) reaches at least 0.9 of
the images/s of a bare loop that only runs the forward pass: the same encoder object, the same batches, already
preprocessed and laid out channels-last before the clock starts, in eval mode under ``no_grad``. A third loop, the
bare forward plus the eval transform per batch, shows how much of any gap is preprocessing. The loops alternate
(``--repeats`` rounds) so that a neighbour's load hits them alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

import zoo
from training.downstream.frozen import extract_features, frozen_features
from training.pretrain.data import FashionMNISTDataModule
from training.pretrain.loop_progress import reporting
from zoo.atomic import atomic_write_text

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def cpu() -> dict:
    """``lscpu``'s model name and whether /proc/cpuinfo lists native bf16 (avx512_bf16, amx_bf16)."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Model name")), "")
    except (OSError, subprocess.CalledProcessError):
        name = platform.processor()
    try:
        flags = next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("flags")), [])
    except OSError:
        flags = []
    return {"model_name": name, "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "threads": torch.get_num_threads()}


def timed(loop) -> float:
    start = time.perf_counter()
    loop()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="yadim.fashion_mnist")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results/extract_throughput.json")
    args = parser.parse_args()

    encoder = zoo.load_encoder(args.encoder)
    preprocess = zoo.eval_transform(encoder)
    dm = FashionMNISTDataModule(root=FASHION_MNIST)
    loader = dm.knn_bank_dataloader() if args.split == "train" else dm.test_dataloader()
    encode = frozen_features(encoder, preprocess)  # the model is now in eval mode and channels-last
    raw = [images for images, _ in loader]
    ready = [preprocess(images).contiguous(memory_format=torch.channels_last) for images in raw]
    n = sum(len(x) for x in raw)

    @torch.no_grad()
    def bare() -> None:
        for x in ready:
            encoder(x)

    @torch.no_grad()
    def bare_with_preprocessing() -> None:
        for images in raw:
            encoder(preprocess(images).contiguous(memory_format=torch.channels_last))

    def extraction() -> None:
        with reporting(quiet=True):
            extract_features(encode, loader)

    loops = {"bare_forward": bare, "bare_forward_plus_preprocessing": bare_with_preprocessing,
             "extract_features": extraction}
    bare()  # warm-up: one pass each before timing
    extraction()
    seconds = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, loop in loops.items():
            seconds[name].append(timed(loop))
    rates = {name: n / statistics.median(times) for name, times in seconds.items()}
    ratio = rates["extract_features"] / rates["bare_forward"]
    result = {"encoder": args.encoder, "split": args.split, "images": n, "batch_size": dm.eval_batch_size,
              "repeats": args.repeats, "images_per_second": {k: round(v, 1) for k, v in rates.items()},
              "ratio_extract_to_bare": round(ratio, 3), "target": 0.9, "seconds": seconds, "cpu": cpu(),
              "torch": torch.__version__}
    for name, rate in rates.items():
        print(f"{name}: {rate:.0f} images/s")
    print(f"extract_features / bare forward: {ratio:.3f} (target >= 0.9)")
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
