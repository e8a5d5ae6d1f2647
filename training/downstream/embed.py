"""``embed_folder``: the embedding of every image under a folder, with the encoder's own eval transform.

For users who want features of their own, unlabelled images (search, clustering, the label-free figures of
``training.downstream.spectrum``). Every file with an image suffix under the folder (recursive; the suffixes
torchvision's ImageFolder takes, as ``evaluate`` does) becomes one row, the rows sorted by relative path. Images of
any size and mode (grey, RGB, RGBA, palette, 16-bit) are read by ``zoo.images.read_image`` (one conversion for every
reader) and preprocessed by ``zoo.eval_transform(encoder)`` (resized to the encoder's input, normalised).

The work is cut into chunks of ``chunk_size`` images saved in a work folder beside the output
(``training.downstream.embed_chunks``): a run killed half-way and run again computes only the chunks not yet
saved, and its rows equal an uninterrupted run's. The output is written atomically at the end
(``training.downstream.embed_formats``) and the work folder removed.

Precision and memory format follow ``training.pretrain.hardware`` as ``fit`` does: ``auto`` is bf16 autocast on
CPUs with native bf16 (AVX512-BF16/AMX) and on bf16 GPUs, fp32 elsewhere, and channels-last convolutions. bf16
rows are close to fp32 ones, not equal (yadim.fashion_mnist, 256 Fashion-MNIST images: cosine >= 0.997 per row,
the largest difference 5.5% of the largest feature); pass ``precision="32-true"`` for fp32 rows. The choice and
its reason go into the output's metadata.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO, Union

import numpy as np
import torch

import zoo
from training.downstream.embed_chunks import Chunk, ChunkStore, fingerprint, weights_digest
from training.downstream.embed_formats import output_format, write_embeddings
from training.pretrain.progress import duration
from zoo.atomic import write_error
from zoo.errors import ZooError
from zoo.images import UnreadableImage, read_image

SKIP_OPTION = "--skip-unreadable true"
AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16, "32-true": None}


def list_images(folder: Path) -> List[str]:
    """Relative POSIX paths of the image files under ``folder`` (any depth), sorted; one line when there are
    none (``embed`` and ``evaluate --protocol rankme|areq`` on a folder both list through here)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
    if not files:
        raise ZooError(f"{folder} holds no image files (.png, .jpg, .jpeg, .bmp, .tif, .webp, ... at any depth)")
    return files


def work_folder(out: Path) -> Path:
    return out.with_name(f".{out.name}.parts")


def resolve_settings(precision: Optional[str], channels_last: Union[bool, str, None],
                     device: Optional[str]) -> Dict[str, Any]:
    """Device, precision and memory format with the reason for each (``hardware``'s ``auto``)."""
    from training.pretrain.hardware import probe, resolve_channels_last, resolve_precision

    hw = probe()
    try:
        where = torch.device(device or ("cuda" if hw.cuda else "cpu"))
    except RuntimeError as err:
        raise ZooError(f"unknown device {device!r}: {err}") from None
    if where.type == "cuda" and not hw.cuda:
        raise ZooError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use --device cpu")
    chosen, why = resolve_precision(precision, "gpu" if where.type == "cuda" else "cpu", hw)
    chosen = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}.get(str(chosen), str(chosen))
    if chosen not in AUTOCAST or (chosen == "16-mixed" and where.type != "cuda"):
        raise ZooError(f"embed runs with precision auto, 32-true or bf16-mixed (16-mixed on CUDA only), "
                       f"not {precision!r}")
    try:
        layout, layout_why = resolve_channels_last(channels_last)
    except ValueError as err:
        raise ZooError(str(err)) from None
    return {"device": str(where), "precision": chosen, "precision_reason": why, "channels_last": layout,
            "channels_last_reason": layout_why, "cpu": hw.cpu}


class ImageFiles(torch.utils.data.Dataset):
    """(row, preprocessed image or None, reason) for each file, so unreadable files reach the main process as
    values rather than as a worker's traceback."""

    def __init__(self, root: Path, files: List[str], transform: Any, channels: int) -> None:
        self.root, self.files, self.transform, self.channels = root, files, transform, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, row: int) -> tuple:
        try:
            image = read_image(self.root / self.files[row], self.channels, name=str(self.root / self.files[row]))
        except UnreadableImage as err:
            return row, None, err.reason
        return row, self.transform(image), None


class _Progress:
    """A line on ``stream`` every ``every`` seconds while it is a terminal and not ``quiet``; the final line always."""

    def __init__(self, total: int, stream: TextIO, every: float, quiet: bool) -> None:
        self.total, self.stream, self.every = total, stream, every
        self.live = not quiet and stream.isatty()
        self.start = self.last = time.perf_counter()
        self.done = self.computed = 0

    def advance(self, images: int, computed: bool) -> None:
        self.done += images
        self.computed += images if computed else 0
        now = time.perf_counter()
        if self.live and now - self.last >= self.every:
            self.last = now
            rate = self.computed / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            self.say(f"embed: {self.done}/{self.total} images, {rate:.1f} images/s, ETA {duration(eta)}")

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def carried_config(model: torch.nn.Module) -> Dict[str, Any]:
    """The config an encoder from ``zoo.load_encoder`` carries (``zoo_config``; any module may carry one, e.g. a
    wrapper around such an encoder), or one line: the eval transform and the fingerprint are built from it."""
    config = getattr(model, "zoo_config", None)
    if not isinstance(config, dict):
        raise ZooError("embed needs an encoder from zoo.load_encoder (it carries the config its eval transform "
                       "is built from)")
    return config


def embed_folder(folder: Union[str, Path], encoder: Union[str, torch.nn.Module], out: Union[str, Path], *,
                 batch_size: int = 64, chunk_size: int = 1024, skip_unreadable: bool = False,
                 precision: Optional[str] = "auto", channels_last: Union[bool, str, None] = "auto",
                 device: Optional[str] = None, num_workers: int = 0, overwrite: bool = False,
                 registry: Optional[str] = None, quiet: bool = False, stream: Optional[TextIO] = None,
                 progress_every: float = 10.0) -> Dict[str, Any]:
    """Embed every image under ``folder`` with ``encoder`` (a module from ``zoo.load_encoder`` or anything it
    takes) into ``out`` (``.npy`` + sidecar, ``.parquet`` or ``.csv``); returns a summary with the metadata.

    The module is put in eval mode, channels-last and on ``device`` in place. Progress goes to ``stream``
    (default stderr). An unreadable image stops the run with one line naming it (the chunks finished so far are
    kept), or with ``skip_unreadable`` is left out, listed in the metadata and counted on the final line.
    """
    root, out, stream = Path(folder).expanduser(), Path(out).expanduser(), stream or sys.stderr
    output_format(out)
    if not root.is_dir():
        raise ZooError(f"{folder} is not a folder of images")
    if out.exists() and not overwrite:
        raise ZooError(f"{out} already exists; pass --overwrite true (overwrite=True) to replace it")
    if batch_size < 1 or chunk_size < 1:
        raise ZooError(f"batch_size and chunk_size must be positive, got {batch_size} and {chunk_size}")
    model = zoo.load_encoder(encoder, registry=registry) if isinstance(encoder, (str, Path)) else encoder
    config = carried_config(model)
    files = list_images(root)
    settings = resolve_settings(precision, channels_last, device)
    weights = weights_digest(model)
    key = dict(settings, weights=weights, config=config, batch_size=batch_size,
               chunk_size=chunk_size, skip_unreadable=skip_unreadable)
    progress = _Progress(len(files), stream, progress_every, quiet)
    store = ChunkStore(work_folder(out), fingerprint(root, files, key), progress.say)
    try:
        chunks = encode_chunks(model, root, files, store, settings, batch_size, chunk_size, skip_unreadable,
                               num_workers, progress)
    except BaseException:
        if not store.finished():  # nothing to resume from: leave no empty work folder behind
            store.remove()
        raise
    rows = np.concatenate([c.rows for c in chunks])
    filled = [c.features for c in chunks if len(c.rows)]  # a chunk of unreadable files only has no features
    features = np.concatenate(filled) if filled else np.zeros((0, 0), np.float32)
    skipped = {files[row]: why for c in chunks for row, why in c.skipped}
    if not len(rows):
        raise ZooError(f"none of the {len(files)} images under {folder} can be decoded (the first: "
                       f"{next(iter(skipped.items()))})")
    source = getattr(model, "zoo_source", None) or {}
    named = str(encoder) if isinstance(encoder, (str, Path)) else source.get("label", type(model).__name__)
    metadata = {"encoder": named, "weights_sha256": weights, "encoder_source": source or None,
                "data": str(root.resolve()), "eval_transform": repr(zoo.eval_transform(model)), **settings,
                "skipped_unreadable": skipped}
    try:
        write_embeddings(out, [files[r] for r in rows], features, metadata)
    except OSError as err:
        raise write_error(err, f"cannot write the embeddings to {out}", out.parent,
                          kept=f"the finished chunks are kept in {store.folder}") from None
    store.remove()
    seconds = time.perf_counter() - progress.start
    resumed = len(files) - progress.computed
    progress.say(f"embed: {len(rows)} rows x {features.shape[1]} dims written to {out} in {duration(seconds)} "
                 f"({progress.computed / max(seconds, 1e-9):.1f} images/s"
                 + (f"; {resumed} images from an interrupted run's chunks" if resumed else "")
                 + (f"; skipped {len(skipped)} unreadable" if skipped else "") + ")")
    return {"out": str(out), "rows": len(rows), "dims": int(features.shape[1]), "encoded": progress.computed,
            "resumed": resumed, "skipped_unreadable": len(skipped), "seconds": round(seconds, 2),
            "metadata": {**metadata, "rows": len(rows), "dims": int(features.shape[1])}}


@torch.no_grad()
def encode_chunks(model: torch.nn.Module, root: Path, files: List[str], store: ChunkStore, settings: Dict[str, Any],
                  batch_size: int, chunk_size: int, skip_unreadable: bool, num_workers: int,
                  progress: _Progress) -> List[Chunk]:
    """Every chunk of ``files``: loaded from ``store`` when finished before, else encoded and saved there."""
    spans = [(lo, min(lo + chunk_size, len(files))) for lo in range(0, len(files), chunk_size)]
    chunks: Dict[int, Chunk] = {}
    for index in range(len(spans)):
        loaded = store.load(index)
        if loaded is not None:
            chunks[index] = loaded
            progress.advance(spans[index][1] - spans[index][0], computed=False)
    pending = [(index, lo, hi) for index, (lo, hi) in enumerate(spans) if index not in chunks]
    batches = [list(range(start, min(start + batch_size, hi))) for _, lo, hi in pending
               for start in range(lo, hi, batch_size)]
    device, layout = torch.device(settings["device"]), settings["channels_last"]
    model = model.eval().to(device)
    if layout:
        model = model.to(memory_format=torch.channels_last)
    dtype = AUTOCAST[settings["precision"]]
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    channels = 1 if carried_config(model)["input"]["channels"] == 1 else 3
    images = ImageFiles(root, files, zoo.eval_transform(model), channels)
    loader = torch.utils.data.DataLoader(images, batch_sampler=batches, num_workers=num_workers,
                                         collate_fn=list)
    owner = {row: index for index, lo, hi in pending for row in range(lo, hi)}
    parts: Dict[int, List[tuple]] = {index: [] for index, _, _ in pending}
    with autocast:  # one region for the loop: autocast's cache of bf16 weight copies lives as long as it
        for batch in loader:
            bad = [(row, why) for row, x, why in batch if x is None]
            if bad and not skip_unreadable:
                raise ZooError(f"cannot decode image {root / files[bad[0][0]]}: {bad[0][1]}; pass {SKIP_OPTION} to "
                               "leave unreadable files out")
            good = [(row, x) for row, x, _ in batch if x is not None]
            features = np.zeros((0, 0), np.float32)
            if good:
                x = torch.stack([x for _, x in good]).to(device)
                if layout and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                features = model(x).float().flatten(1).cpu().numpy()
            index = owner[batch[0][0]]
            parts[index].append(([row for row, _ in good], features, bad))
            progress.advance(len(batch), computed=True)
            if batch[-1][0] == spans[index][1] - 1:  # the chunk's last batch: save it before the next one
                chunks[index] = _assemble(parts.pop(index))
                store.save(index, chunks[index])
    return [chunks[index] for index in range(len(spans))]


def _assemble(parts: List[tuple]) -> Chunk:
    """One chunk from its batches' (rows, features, skipped)."""
    rows = np.asarray([row for part in parts for row in part[0]], dtype=np.int64)
    shaped = [f for _, f, _ in parts if f.size]
    features = np.concatenate(shaped) if shaped else np.zeros((0, 0), np.float32)
    return Chunk(rows, features, [item for part in parts for item in part[2]])
