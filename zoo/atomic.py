"""Atomic file writes: a reader, or a process killed at any instant, sees the old file or the new one, never half.

Data goes to a temporary file in the target's folder (same filesystem, so the rename is atomic), is flushed and
fsynced, then renamed over the target; the folder is fsynced so the rename itself survives a power cut. On any
error the temporary file is removed and the target is left as it was.

Temporary files and folders are created private (``tempfile`` makes them 0600 and 0700), so before they are renamed
into place they get the permissions a plain ``open``/``mkdir`` would have given them under the process's umask
(0644 and 0755 with the usual 022, 0664 and 0775 with a team's 002), or those of the file they replace: a shared
registry or hub stays readable by the people it is shared with. ``write_error`` turns the ``OSError`` of a failed
write (a full disk, a read-only folder) into the one-line ``ZooError`` a command ends with.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from zoo.errors import ZooError


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_file(path) as handle: handle.write(...)``; ``mode`` is 'wb' or 'w'."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file writes whole files: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_file(path, "w") as handle:
        handle.write(text)


def temp_file_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """``mkstemp`` in ``path``'s folder -> (open descriptor, name), with the permissions of the file it will
    replace, or else those a new file gets under the umask (``mkstemp`` alone makes it 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, stat.S_IMODE(path.stat().st_mode) if path.is_file() else created_mode())
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, tmp


def probe_writable(folder: Path) -> None:
    """Raise the ``OSError`` that creating a file in ``folder`` would meet (read-only, full), creating nothing."""
    fd, probe = tempfile.mkstemp(prefix=".probe.", dir=folder)
    os.close(fd)
    os.unlink(probe)


def temp_dir_beside(target: Path) -> Path:
    """A fresh folder beside ``target`` to assemble it in, with the permissions a new folder gets under the umask
    (``mkdtemp`` alone makes it 0700); ``target``'s parents are created as needed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(created_mode(directory=True))
    return tmp


def give_umask_modes(folder: Path) -> None:
    """Give every file and folder under the staged ``folder`` the permissions of a plainly created one: some
    writers create their files private (safetensors' ``save_file`` makes them 0600)."""
    file_mode, folder_mode = created_mode(), created_mode(directory=True)
    for path in folder.rglob("*"):
        path.chmod(folder_mode if path.is_dir() else file_mode)


def created_mode(directory: bool = False) -> int:
    """The permissions a plain ``open`` (0o666) or ``mkdir`` (0o777) gives a new file or folder under the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def current_umask() -> int:
    """The process's umask. POSIX can only read it by setting it, so it is 0o077 for an instant (a file another
    thread creates meanwhile is then private rather than world-writable) and restored at once."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def write_error(err: OSError, action: str, where: str | os.PathLike, kept: str = "nothing was changed") -> ZooError:
    """The one-line error for ``err``, met while writing into the folder ``where``: ``"{action}: {reason};
    {kept}: {fix}"``, e.g. "cannot export to out/enc: no space left on the device of out; nothing was written:
    free some space and try again"."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason, fix = f"no space left on the device of {where}", "free some space and try again"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # every write here creates a file or folder
        folder = Path(err.filename).parent if err.filename else where
        reason, fix = f"{folder} is not writable ({err.strerror})", "check its permissions or write elsewhere"
    else:
        detail = f"{err.strerror}: {err.filename}" if err.filename else (err.strerror or str(err))
        reason, fix = f"writing in {where} failed ({detail})", "check the folder and try again"
    return ZooError(f"{action}: {reason}; {kept}: {fix}")


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
