"""Downloading a released checkpoint: resumable, retried, with a progress bar, checked against its publisher's digest.

The HTTP work is ``huggingface_hub``'s ``http_get``: it streams into a file, resumes with an HTTP ``Range`` request
where the file already holds bytes, retries dropped connections and timeouts (``HF_HUB_DOWNLOAD_TIMEOUT``),
follows redirects and answers 408/429 with backoff. What is ours: a partial file kept beside the cache
(``NAME.part``) so that the *next* call resumes after an interrupted one, one-line errors, and the publisher's
digest (``md5:a04e12f8``, ``sha256:b6d23c86``, a whole sha256) checked before anything reads the file.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Sequence

from zoo.errors import ZooError, first_line

_DIGEST = re.compile(r"^(?P<algorithm>md5|sha256):(?P<value>[0-9a-f]{8,64})$")
_FULL_LENGTH = {"md5": 32, "sha256": 64}


class Digest(NamedTuple):
    """A digest a publisher states for a file: an algorithm and the hex digits it gives (a prefix or all)."""

    algorithm: str  # md5 | sha256
    value: str      # lower-case hex, 8 digits up to the full length

    @classmethod
    def parse(cls, text: Any, where: str) -> "Digest":
        match = _DIGEST.match(text) if isinstance(text, str) else None
        if match is None or len(match.group("value")) > _FULL_LENGTH[match.group("algorithm")]:
            raise ZooError(f"{where}: digest must be 'md5:HEX' or 'sha256:HEX' with 8 or more lower-case hex digits "
                           f"(a prefix, as publishers print them, or the whole digest), got {text!r}")
        return cls(match.group("algorithm"), match.group("value"))

    @property
    def kind(self) -> str:
        whole = len(self.value) == _FULL_LENGTH[self.algorithm]
        return self.algorithm if whole else f"{self.algorithm} prefix"

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"

    def matches(self, digests: Dict[str, str]) -> bool:
        return digests[self.algorithm].startswith(self.value)


def file_digests(path: str | Path, algorithms: Sequence[str] = ("md5", "sha256")) -> Dict[str, str]:
    """The hex digests of a file (by default its md5 and sha256), the file read once."""
    hashers = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            for hasher in hashers.values():
                hasher.update(block)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def show_progress(progress: Optional[bool]) -> bool:
    """``progress`` when given; else a bar only where stderr is a terminal and ``ZOO_QUIET`` is not set."""
    if progress is not None:
        return progress
    return sys.stderr.isatty() and os.environ.get("ZOO_QUIET", "").lower() in ("", "0", "false", "no")


def download(url: str, part: Path, *, label: str, progress: Optional[bool] = None) -> None:
    """Fetch ``url`` into ``part``, continuing from the bytes ``part`` already holds (HTTP Range).

    On any failure the bytes received so far stay in ``part`` for the next call, except on a full disk, where
    they are removed (nothing half-written is left behind); every failure is one ``ZooError`` line.
    """
    from huggingface_hub.file_download import http_get

    part.parent.mkdir(parents=True, exist_ok=True)
    resume = part.stat().st_size if part.exists() else 0
    kwargs: Dict[str, Any] = {"resume_size": resume, "displayed_filename": label}
    if "tqdm_class" in inspect.signature(http_get).parameters:
        kwargs["tqdm_class"] = _bar_class(show_progress(progress))
    try:
        with open(part, "ab") as stream:
            http_get(url, stream, **kwargs)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            part.unlink(missing_ok=True)
            raise ZooError(f"no space left on the device of {part.parent} while downloading {label} from {url}; "
                           "free some space (or point ZOO_CACHE elsewhere) and try again") from None
        raise ZooError(_failure(url, label, part, err)) from None
    except Exception as err:  # noqa: BLE001 - httpx/requests and huggingface_hub errors alike, one line each
        raise ZooError(_failure(url, label, part, err)) from None


def _failure(url: str, label: str, part: Path, err: BaseException) -> str:
    status = getattr(getattr(err, "response", None), "status_code", None)
    kept = part.stat().st_size if part.exists() else 0
    resume = f"; {kept:,} bytes are kept in {part} and the next call resumes from there" if kept else ""
    if status == 404:
        return f"{label}: {url} answered 404 Not Found (the file moved or ZOO_MIRROR lacks it){resume}"
    if status is not None:
        return f"{label}: downloading {url} failed with HTTP {status}{resume}"
    return f"{label}: downloading {url} failed: {type(err).__name__}: {first_line(err)}{resume}"


def _bar_class(show: bool) -> Any:
    """A tqdm bar on stderr, shown or hidden by our rule (``show_progress``) rather than huggingface_hub's."""
    from tqdm import tqdm

    class ZooBar(tqdm):  # tqdm has no type information: a subclass of Any
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.update(disable=not show, file=sys.stderr)
            super().__init__(*args, **kwargs)

    return ZooBar
