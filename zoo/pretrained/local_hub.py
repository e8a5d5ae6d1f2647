"""A local directory hub: one bare git repository per model, laid out like the Hugging Face Hub.

``ROOT/models/ORG/NAME`` is a git repository whose commits are revisions, exactly what the Hub stores. Air-gapped
teams publish into such a folder with ``python -m training publish DIR --to ROOT``; ``zoo.load_encoder`` reads
it directly (``git cat-file``), and olah (``mirrors-path = ROOT``) serves the same folder to any Hugging Face
client through ``HF_ENDPOINT``. Commits are made with git plumbing (``hash-object``, ``mktree``, ``commit-tree``)
and land with one compare-and-swap ``update-ref``, so a reader sees either the old revision or the new one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Mapping, Optional

from zoo.errors import ZooError

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
BRANCH = "main"
_IDENTITY = {"GIT_AUTHOR_NAME": "contrastive-zoo", "GIT_AUTHOR_EMAIL": "zoo@localhost",
             "GIT_COMMITTER_NAME": "contrastive-zoo", "GIT_COMMITTER_EMAIL": "zoo@localhost"}


def check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id) or ".." in repo_id:
        raise ZooError(f"repo id {repo_id!r} is not of the form ORG/NAME (letters, digits, '.', '_', '-')")
    return repo_id


def repo_path(root: str | os.PathLike, repo_id: str) -> Path:
    return Path(root) / "models" / check_repo_id(repo_id)


def _git(git_dir: Path, *args: str, data: Optional[bytes] = None, check: bool = True) -> bytes:
    if shutil.which("git") is None:
        raise ZooError("the local directory hub needs the git command, which is not installed")
    env = {**os.environ, **_IDENTITY, "GIT_DIR": str(git_dir)}
    proc = subprocess.run(["git", *args], input=data, capture_output=True, env=env)
    if check and proc.returncode != 0:
        raise ZooError(f"git {' '.join(args[:2])} failed in {git_dir}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _head(git_dir: Path) -> Optional[str]:
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{BRANCH}"],
                         capture_output=True, env={**os.environ, "GIT_DIR": str(git_dir)})
    return out.stdout.decode().strip() or None


def head(root: str | os.PathLike, repo_id: str) -> Optional[str]:
    """The commit ``main`` points at, or None when the repository does not exist yet or has no commit."""
    git_dir = repo_path(root, repo_id)
    return _head(git_dir) if (git_dir / "HEAD").is_file() else None


def reset_branch(root: str | os.PathLike, repo_id: str, commit: str, parent: Optional[str]) -> None:
    """Undo ``commit`` on ``main``: point the branch back at ``parent`` (delete it when ``parent`` is None), only
    if it still points at ``commit`` (compare-and-swap, like the commit itself). The commit's objects stay,
    unreachable, as after any discarded commit."""
    git_dir = repo_path(root, repo_id)
    if parent is None:
        _git(git_dir, "update-ref", "-d", f"refs/heads/{BRANCH}", commit)
    else:
        _git(git_dir, "update-ref", f"refs/heads/{BRANCH}", parent, commit)


def commit_files(root: str | os.PathLike, repo_id: str, files: Mapping[str, bytes], message: str,
                 parent: Optional[str] = None) -> str:
    """Commit ``files`` (flat names -> bytes) on top of ``main`` and return the new commit sha.

    Files of the parent revision that are not in ``files`` are kept, as with ``HfApi.upload_folder``. When
    ``parent`` is given, the commit only lands if ``main`` still points there (the Hub's ``parentCommit``).
    """
    git_dir = repo_path(root, repo_id)
    if not (git_dir / "HEAD").is_file():
        git_dir.mkdir(parents=True, exist_ok=True)
        _git(git_dir, "init", "--quiet", "--bare", f"--initial-branch={BRANCH}")
    head = _head(git_dir)
    if parent is not None and parent != head:
        raise ZooError(f"{repo_id}: main is at {head}, not at the expected parent {parent}")
    entries: Dict[str, str] = {}
    if head:
        for line in _git(git_dir, "ls-tree", head).decode().splitlines():
            meta, name = line.split("\t", 1)
            entries[name] = meta
    for name, data in files.items():
        if not name or "/" in name or name.startswith("."):
            raise ZooError(f"{repo_id}: file name {name!r} is not allowed (flat, visible names only)")
        blob = _git(git_dir, "hash-object", "-w", "--stdin", data=bytes(data)).decode().strip()
        entries[name] = f"100644 blob {blob}"
    tree_input = "".join(f"{meta}\t{name}\n" for name, meta in sorted(entries.items())).encode()
    tree = _git(git_dir, "mktree", data=tree_input).decode().strip()
    args = ["commit-tree", tree, "-m", message] + (["-p", head] if head else [])
    commit = _git(git_dir, *args).decode().strip()
    _git(git_dir, "update-ref", f"refs/heads/{BRANCH}", commit, head or "0" * 40)
    return commit


def resolve_revision(root: str | os.PathLike, repo_id: str, revision: Optional[str] = None) -> str:
    """The commit sha of ``revision`` (a branch, tag or sha; default ``main``)."""
    git_dir = repo_path(root, repo_id)
    if not (git_dir / "HEAD").is_file():
        raise ZooError(f"{repo_id} is not in the local hub {root} (no repository at {git_dir})")
    rev = revision or BRANCH
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True,
                         env={**os.environ, "GIT_DIR": str(git_dir)})
    sha = out.stdout.decode().strip()
    if out.returncode != 0 or not sha:
        raise ZooError(f"revision {rev!r} not found in {repo_id} (local hub {root})")
    return sha


def read_file(root: str | os.PathLike, repo_id: str, revision: str, filename: str) -> bytes:
    """The bytes of ``filename`` at ``revision``."""
    sha = resolve_revision(root, repo_id, revision)
    git_dir = repo_path(root, repo_id)
    out = subprocess.run(["git", "cat-file", "blob", f"{sha}:{filename}"], capture_output=True,
                         env={**os.environ, "GIT_DIR": str(git_dir)})
    if out.returncode != 0:
        raise ZooError(f"{repo_id}@{sha[:12]} has no file {filename!r} (local hub {root})")
    return out.stdout
