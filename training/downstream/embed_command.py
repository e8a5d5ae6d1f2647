"""``python -m training embed DATA --encoder NAME --out FILE``: embeddings of every image under a folder.

The command around ``training.downstream.embed.embed_folder`` (which is the Python API): the same options, the
summary printed as JSON on stdout, progress and the final line on stderr.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from training.downstream.embed import embed_folder


def embed(data: str, *, encoder: str, out: str, batch_size: int = 64, chunk_size: int = 1024,
          skip_unreadable: bool = False, precision: str = "auto", channels_last: str = "auto",
          device: Optional[str] = None, num_workers: int = 0, overwrite: bool = False,
          registry: Optional[str] = None, quiet: bool = False) -> Dict[str, Any]:
    """Embed every image under a folder (any depth, labelled or not) with an encoder's own eval transform.

    Args:
        data: the image folder; every .png/.jpg/.jpeg/.bmp/.tif/.webp/... file under it is one row, rows sorted
            by relative path.
        encoder: a registry name, ``hf-hub:ORG/NAME[@REV]`` or an exported folder.
        out: the output file, its format chosen by the suffix: ``.npy`` (paths and metadata in ``OUT.json``),
            ``.parquet`` (``path`` and ``embedding`` columns; needs pyarrow) or ``.csv`` (``path,f0,f1,...``).
        batch_size: images per forward pass.
        chunk_size: images per saved chunk: a run killed and run again recomputes only unsaved chunks.
        skip_unreadable: leave out images that cannot be decoded (listed in the metadata) instead of stopping.
        precision: auto (bf16 autocast where the CPU or GPU runs bf16 natively, else fp32), 32-true or
            bf16-mixed (16-mixed on CUDA).
        channels_last: auto (channels-last), true or false.
        device: cpu or cuda (default: cuda when there is one).
        num_workers: image-decoding worker processes (0: decode in this process).
        overwrite: replace an existing output file.
        registry: the weights registry to resolve names in (default: the package's).
        quiet: no progress lines, only the final one (also the case when stderr is not a terminal).
    """
    summary = embed_folder(data, encoder, out, batch_size=batch_size, chunk_size=chunk_size,
                           skip_unreadable=skip_unreadable, precision=precision, channels_last=channels_last,
                           device=device, num_workers=num_workers, overwrite=overwrite, registry=registry,
                           quiet=quiet)
    summary.pop("metadata")  # in the sidecar; the summary stays short
    return summary
