"""What ``embed_folder`` costs beyond the encoder: its images/s beside a bare forward loop, in one run.

    PYTHONPATH=. python bench/embed_throughput.py [--encoder yadim.fashion_mnist] [--images 2048] [--batch-size 64]
        [--precision auto] [--workers 0] [--repeats 3] [--threads 0]

A temporary folder of ``--images`` Fashion-MNIST test images as 28x28 grey PNGs is written (from
/usr/share/datasets/fashion-mnist, or ``--root``). Then, with the same device, precision and memory format
(``embed``'s ``auto`` resolution, printed):

- ``bare forward``: the images decoded and preprocessed beforehand into one tensor, timed only through
  ``encoder(batch)`` in batches of ``--batch-size``: the ceiling;
- ``embed_folder``: the whole command path timed end to end: listing, decoding PNGs (``zoo.images``), the eval
  transform per image, the forward passes, saving chunks, writing the ``.npy`` and its sidecar.

The gap is the overhead a user pays for reading files (and, with ``--workers``, what decoding in parallel wins
back). Both run after a warm-up, ``--repeats`` times interleaved, and the best time of each is reported. Timings on
a shared machine are lower bounds; name the CPU and its load beside them. On a loaded machine use ``--threads 1``:
with torch's two threads on a 2-core machine whose load average was 8, the bare forward fell from about 2,300 to
about 290 images/s (threads waiting on each other), which says nothing about ``embed``.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_pngs(folder: Path, n: int, root: str) -> None:
    from training.pretrain.data import FashionMNISTDataModule

    data = FashionMNISTDataModule(root=root).load_split("test")
    for i in range(n):
        sub = folder / f"{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[i % len(data.images), 0].numpy(), mode="L").save(sub / f"{i:05d}.png")


def bare_forward(model: torch.nn.Module, x: torch.Tensor, settings: dict, batch_size: int) -> float:
    """Seconds to push the preloaded ``x`` through ``model`` as ``embed_folder`` does (no decoding, no writing)."""
    from training.downstream.embed import AUTOCAST

    dtype = AUTOCAST[settings["precision"]]
    model = model.eval().to(settings["device"])
    if settings["channels_last"]:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu" if settings["device"] == "cpu" else "cuda", dtype=dtype or
                                         torch.bfloat16, enabled=dtype is not None):
        model(x[:batch_size])  # warm-up
        start = time.perf_counter()
        for batch in x.split(batch_size):
            model(batch).float().cpu()
        return time.perf_counter() - start


def main() -> None:
    import zoo
    from training.downstream.embed import embed_folder, list_images, resolve_settings
    from training.pretrain.hardware import native_cpu_bf16
    from zoo.images import read_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="yadim.fashion_mnist")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # one thread: figures a loaded, shared machine disturbs less

    settings = resolve_settings(args.precision, "auto", None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        write_pngs(folder, args.images, args.root)
        model = zoo.load_encoder(args.encoder)
        transform, channels = zoo.eval_transform(model), 1 if model.zoo_config["input"]["channels"] == 1 else 3
        x = torch.stack([transform(read_image(folder / p, channels)) for p in list_images(folder)])
        warm = Path(tmp) / "warm"
        write_pngs(warm, args.batch_size, args.root)
        embed_folder(warm, model, Path(tmp) / "warm.npy", batch_size=args.batch_size, precision=args.precision,
                     quiet=True, stream=io.StringIO())
        bare = whole = float("inf")
        for _ in range(args.repeats):  # interleaved, best of each: a shared machine's load hits both alike
            bare = min(bare, bare_forward(model, x, settings, args.batch_size))
            start = time.perf_counter()
            embed_folder(folder, model, Path(tmp) / "out.npy", batch_size=args.batch_size, overwrite=True,
                         precision=args.precision, num_workers=args.workers, quiet=True, stream=io.StringIO())
            whole = min(whole, time.perf_counter() - start)
    print(f"cpu: {settings['cpu']} (native bf16: {native_cpu_bf16()}), torch threads {torch.get_num_threads()}, "
          f"load average {Path('/proc/loadavg').read_text().split()[0]}")
    print(f"encoder {args.encoder}, {args.images} Fashion-MNIST PNGs (28x28 grey), batch {args.batch_size}, "
          f"precision {settings['precision']}, channels-last {settings['channels_last']}, "
          f"decode workers {args.workers}")
    print(f"bare forward (preloaded tensors): {args.images / bare:8.1f} images/s (best of {args.repeats})")
    print(f"embed_folder (files to .npy):     {args.images / whole:8.1f} images/s "
          f"({whole / bare:.2f}x the bare forward's time)")


if __name__ == "__main__":
    main()
