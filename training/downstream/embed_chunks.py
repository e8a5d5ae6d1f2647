"""The work folder of ``embed_folder``: finished chunks of rows, kept on disk so a killed run resumes.

The folder ``.OUT.parts`` beside the output holds ``manifest.json`` (the fingerprint of what the chunks were
computed from) and one ``chunk-NNNNNN.npz`` per finished chunk of ``chunk_size`` consecutive images of the sorted
file list: the rows (indices into the list) of its readable images, their float32 features, and the rows and
reasons of the unreadable ones it skipped. Each chunk is written atomically, so a chunk file is whole or absent.

The fingerprint covers everything a row depends on: each file's path, size and modification time, the encoder's
weights and config, and the settings (precision, memory format, device, batch and chunk size, skipping). A rerun
with another fingerprint would mix rows of two computations, so its chunks are thrown away (with a line saying so)
and it starts afresh; a matching rerun loads the finished chunks and computes only the rest. The folder is removed
once the output is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from zoo.atomic import atomic_file, atomic_write_text, write_error
from zoo.errors import ZooError


@dataclass
class Chunk:
    """Rows ``rows`` (indices into the sorted file list) with ``features`` (len(rows), D); ``skipped``: the
    (row, reason) of the chunk's unreadable images."""

    rows: np.ndarray
    features: np.ndarray
    skipped: List[Tuple[int, str]]


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over the module's state (names, dtypes, shapes and bytes): the same weights give the same digest."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def fingerprint(root: Path, files: List[str], settings: Dict[str, Any]) -> str:
    """What the rows depend on, hashed (module docstring); ``settings`` must be JSON-able."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for name in files:
        try:
            stat = (root / name).stat()
        except OSError as err:  # removed or made unreadable since the folder was listed
            raise ZooError(f"cannot read {root / name}: {err.strerror}") from None
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class ChunkStore:
    """The chunks of one fingerprint in ``folder``; ``say`` gets the one line about thrown-away chunks."""

    def __init__(self, folder: Path, print_id: str, say: Callable[[str], None]) -> None:
        self.folder, self.print_id = folder, print_id
        manifest = folder / "manifest.json"
        try:
            if folder.exists() and json.loads(manifest.read_text()).get("fingerprint") != print_id:
                say(f"embed: {folder} holds chunks of another run (other images, encoder or settings); "
                    "starting afresh")
                shutil.rmtree(folder)
        except (OSError, ValueError):  # no or unreadable manifest: nothing there can be trusted
            shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not manifest.is_file():
                atomic_write_text(manifest, json.dumps({"fingerprint": print_id}) + "\n")
        except OSError as err:
            raise write_error(err, "cannot create the work folder of the embeddings", folder.parent) from None

    def path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:06d}.npz"

    def load(self, index: int) -> Optional[Chunk]:
        """The finished chunk ``index``, or None when it is not there (or unreadable: it is then recomputed)."""
        try:
            with np.load(self.path(index), allow_pickle=False) as stored:
                reasons = [str(r) for r in stored["skipped_reasons"]]
                return Chunk(stored["rows"], stored["features"],
                             list(zip((int(r) for r in stored["skipped_rows"]), reasons, strict=True)))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None

    def save(self, index: int, chunk: Chunk) -> None:
        rows, reasons = [r for r, _ in chunk.skipped], [why for _, why in chunk.skipped]
        try:
            with atomic_file(self.path(index)) as handle:
                np.savez(handle, rows=chunk.rows.astype(np.int64), features=chunk.features.astype(np.float32),
                         skipped_rows=np.asarray(rows, dtype=np.int64), skipped_reasons=np.asarray(reasons, dtype=str))
        except OSError as err:
            raise write_error(err, "cannot save a chunk of embeddings", self.folder,
                              kept="the chunks already finished are kept for a rerun") from None

    def finished(self) -> bool:
        """Whether any chunk was saved (a rerun has something to resume from)."""
        return any(self.folder.glob("chunk-*.npz"))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
