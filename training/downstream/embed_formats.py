"""Embedding files: ``.npy``, ``.parquet`` or ``.csv``, chosen by the output's suffix, each written atomically.

One row per image, in the order given (``embed_folder``: sorted relative paths), float32 features:

- ``.npy``: the (N, D) float32 array; the paths are in the sidecar (a ``.npy`` holds one array, and an array of
  strings would need pickle to load).
- ``.parquet``: a ``path`` string column and an ``embedding`` fixed-size list<float32>[D] column (what dataframe
  and vector-database readers take as an embedding column); the metadata is also in the schema's key-value
  metadata under ``contrastive_zoo``. Needs pyarrow (``pip install 'contrastive-zoo[parquet]'``).
- ``.csv``: a header ``path,f0,...,f{D-1}``, each float written with 9 significant digits (enough for any
  float32 to read back bit for bit).

Every format gets the sidecar ``OUT.json`` (``emb.npy.json``, ...): the metadata (encoder, precision, memory
format, skipped files, the row and dim counts, ...) and, for ``.npy``, the paths. The sidecar is renamed into place
before the data file, so a run killed between the two leaves a new sidecar beside an old data file only while the
work folder that the rerun finishes from still exists.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from zoo.atomic import atomic_file, atomic_write_text
from zoo.errors import ZooError

FORMATS = (".npy", ".parquet", ".csv")
FORMAT_TAG = "contrastive-zoo/embeddings@1"
PARQUET_KEY = b"contrastive_zoo"


def output_format(out: Path) -> str:
    """The format ``out``'s suffix names; one-line errors for any other suffix and for parquet without pyarrow,
    raised before any work is done."""
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ZooError(f"cannot tell the format of {out}: its name must end in {', '.join(FORMATS)}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ZooError(f"writing {out} needs pyarrow: pip install 'contrastive-zoo[parquet]' (or pyarrow), or "
                           "write .npy or .csv, which need nothing more") from None
    return suffix


def sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def write_embeddings(out: Path, paths: Sequence[str], features: np.ndarray, metadata: Dict[str, Any]) -> None:
    """``features`` (N, D) with their ``paths`` (N) to ``out`` in the format of its suffix, plus the sidecar."""
    suffix = output_format(out)
    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) != len(paths):
        raise ValueError(f"expected {len(paths)} rows of features, got shape {features.shape}")
    metadata = {**metadata, "format": FORMAT_TAG, "rows": int(features.shape[0]), "dims": int(features.shape[1])}
    side = {**metadata, "paths": list(paths)} if suffix == ".npy" else metadata
    atomic_write_text(sidecar(out), json.dumps(side, indent=1, default=str) + "\n")
    if suffix == ".npy":
        with atomic_file(out) as handle:
            np.save(handle, features, allow_pickle=False)
    elif suffix == ".parquet":
        _write_parquet(out, paths, features, metadata)
    else:
        _write_csv(out, paths, features)


def _write_parquet(out: Path, paths: Sequence[str], features: np.ndarray, metadata: Dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1), pa.float32()), features.shape[1])
    table = pa.table({"path": pa.array(list(paths), pa.string()), "embedding": column})
    table = table.replace_schema_metadata({PARQUET_KEY: json.dumps(metadata, default=str).encode()})
    with atomic_file(out) as handle:
        pq.write_table(table, handle)


def _write_csv(out: Path, paths: Sequence[str], features: np.ndarray) -> None:
    text = np.char.mod("%.9g", features)
    with atomic_file(out, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", *(f"f{j}" for j in range(features.shape[1]))])
        for path, row in zip(paths, text, strict=True):
            writer.writerow([path, *row])


def read_embeddings(out: str | Path) -> Tuple[List[str], np.ndarray, Dict[str, Any]]:
    """``(paths, features (N, D) float32, metadata)`` from a file ``write_embeddings`` wrote (metadata from the
    sidecar, or for parquet from the file itself when the sidecar is gone)."""
    out = Path(out)
    suffix = output_format(out)
    metadata = json.loads(sidecar(out).read_text()) if sidecar(out).is_file() else {}
    if suffix == ".npy":
        if "paths" not in metadata:
            raise ZooError(f"{out}'s paths are in {sidecar(out)}, which is missing")
        return list(metadata.pop("paths")), np.load(out, allow_pickle=False), metadata
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        stored = (table.schema.metadata or {}).get(PARQUET_KEY)
        features = table.column("embedding").combine_chunks().flatten().to_numpy()
        dims = table.schema.field("embedding").type.list_size
        return (table.column("path").to_pylist(), features.reshape(-1, dims).astype(np.float32),
                metadata or (json.loads(stored) if stored else {}))
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    paths = [row[0] for row in rows[1:]]
    values = np.loadtxt(io.StringIO("\n".join(",".join(row[1:]) for row in rows[1:])), delimiter=",",
                        dtype=np.float32, ndmin=2)
    return paths, values.reshape(len(paths), len(rows[0]) - 1), metadata
