"""The fenced code blocks of README.md and docs/*.md, and how ``tests/test_doc_blocks.py`` runs each one.

Documentation that is not run goes stale without anyone noticing, so every fenced block is either run or says by
its info string that it is an output (```text). Python blocks run as written. Shell blocks run command by
command through ``tiny``: the same command, with the settings that make it long swapped for tiny ones (two
optimizer steps, a made-up Fashion-MNIST, the method's Fashion-MNIST recipe instead of an ImageNet one) and
cluster launchers replaced by what they start. JSON blocks are weights registries and YAML blocks explore grids;
both are read by the code that reads them for real. A command the rules below do not know fails the test with its
file and line: teach ``tiny`` about it (or write the block as output) rather than leave it unchecked.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ("text",)  # outputs, messages, files shown for reading: never run
RUN = ("python", "bash", "json", "yaml")
#: the two steps every documented training command is cut to (and two more where it resumes)
STEPS = 2
# the Fashion-MNIST recipes' AMDIM encoder, shrunk (a mapping on the command line replaces the recipe's)
TINY_ENCODER = '{"name": "amdim", "in_channels": 1, "image_size": 32, "ndf": 8, "n_rkhs": 32, "depth": 1}'
#: shell words kept as they are when a command is put back together (redirections, pipes)
SHELL_WORDS = {">", ">>", "<", "|", "&&", "||", "2>&1"}
PAPER_GRID = "training/grids/paper_fmnist.yaml"
FENCE = re.compile(r"^(\s*)```(.*)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    info: str
    text: str

    @property
    def lang(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def where(self) -> str:
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{where}:{self.line}"


def documents() -> List[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> List[Block]:
    """The fenced blocks of one Markdown file, in order; an unclosed fence is an error, not a silent skip."""
    found, lines, i = [], path.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, body, start = opening.group(1), [], i
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{Block(path, start + 1, '', '').where}: a code fence that is never closed")
        found.append(Block(path, start + 1, opening.group(2).strip(), "\n".join(body) + "\n"))
        i += 1
    return found


def commands(text: str) -> List[List[str]]:
    """A shell block's commands as word lists: continuations joined, comments dropped (``#SBATCH`` lines too)."""
    joined = re.sub(r"\\\n", " ", text)
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def join(words: List[str]) -> str:
    """Words back into one shell line: redirections and the pieces of a ``$(...)`` stay as written."""
    def raw(w: str) -> bool:
        return w in SHELL_WORDS or (" " not in w and ("$(" in w or w.endswith(")")))

    return " ".join(w if raw(w) else shlex.quote(w) for w in words)


@dataclass
class Places:
    """Where the made-up inputs of a sandbox are."""

    fmnist: Path  # Fashion-MNIST IDX files (tests.helpers.data.make_fashion_mnist)
    images: Path  # DIR/train/<class>/*.png + DIR/test/<class>/*.png


def _drop(words: List[str], option: str) -> List[str]:
    """``words`` without ``option VALUE`` (and without ``option=VALUE``)."""
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w == option:
            skip = True
        elif not w.startswith(option + "="):
            out.append(w)
    return out


def _value(words: List[str], option: str) -> Optional[str]:
    return words[words.index(option) + 1] if option in words[:-1] else None


def _small_recipe(recipe: str) -> str:
    """The method's Fashion-MNIST recipe for any of its recipes (ImageNet, CIFAR-10, STL-10)."""
    return re.sub(r"/(imagenet|cifar10|stl10)\.yaml$", "/fashion_mnist.yaml", recipe)


def _fit(args: List[str], places: Places) -> List[str]:
    for option in ("--trainer.max_epochs", "--trainer.num_nodes", "--trainer.devices", "--data.root",
                   "--data.init_args.root", "--trainer.default_root_dir"):
        args = _drop(args, option)
    config = _value(args, "--config")
    if config is not None:
        args[args.index("--config") + 1] = _small_recipe(config)
    ckpt = _value(args, "--ckpt_path")
    if ckpt is not None and ckpt != "last":
        args = _drop(args, "--ckpt_path") + ["--ckpt_path", "last"]  # the documented path is on a cluster's disk
    steps = STEPS * (2 if ckpt is not None else 1)
    return args + ["--trainer.max_steps", str(steps), "--trainer.enable_progress_bar", "false",
                   "--data.init_args.root", str(places.fmnist), "--data.init_args.batch_size", "16",
                   "--model.encoder", TINY_ENCODER]


def _training(args: List[str], places: Places) -> List[str]:
    """``python -m training COMMAND ...`` cut to tiny settings."""
    command = args[0]
    if command == "fit":
        return _fit(args, places)
    if command == "check-recipe":
        return [command, _small_recipe(args[1]), *args[2:]]
    if command == "plan":
        return [*args, "--memory", "skip"]  # activation memory is measured at full size: minutes per recipe
    if command == "explore":
        # every configuration built and scored on a synthetic batch, no cell run; GRID.yaml: the paper's grid
        grid = [a if not a.endswith(".yaml") or (ROOT / a).exists() else PAPER_GRID for a in args]
        return [a for a in grid if a not in ("--jobs", "--collect", "--check")] + ["--check"]
    if command == "evaluate":
        if _value(args, "--data") == "fashion_mnist":
            args = [*args, "--root", str(places.fmnist)]
        if _value(args, "--data") == "path/to/images":
            args[args.index("--data") + 1] = str(places.images)
        if "--epochs" in args:
            args = _drop(args, "--epochs") + ["--epochs", "1"]
        return args
    if command == "embed":  # the made-up image folder; a placeholder encoder (ORG/NAME, my_encoder): the shipped one
        args = [str(places.images) if a == "path/to/images" else a for a in args]
        encoder = _value(args, "--encoder")
        if encoder in ("hf-hub:ORG/NAME", "exported/my_encoder"):
            args[args.index("--encoder") + 1] = "yadim"
        return args
    if command in ("export", "publish", "plot", "import-legacy", "releases", "cards"):
        return args
    raise KeyError(f"python -m training {command}")


def tiny(words: List[str], places: Places) -> List[str]:
    """The tiny variant of one documented command; ``KeyError`` names a command these rules do not know."""
    if words[0] == "srun":  # a cluster launcher: what it starts, once
        return tiny(words[1:], places)
    if words[0] == "torchrun":
        return tiny(["python", *words[words.index("-m"):]], places)
    if words[0] == "make" and words[1:] == ["demo"]:  # set-up aside (this interpreter has it), what it runs
        return tiny(["python", "-m", "training.demo"], places)
    if words[0] == "make" and words[1:] in (["test"], ["install"]):  # the suite this test is part of, and the
        return ["make", "--dry-run", *words[1:]]  # set-up of the interpreter running it: the targets, not a rerun
    if words[0] == "sbatch":  # the sandbox's sbatch stub checks the array and the wrapped command, runs nothing
        return words
    if words[0] in (".venv/bin/python", "python", "python3"):
        rest = words[1:]
        if rest[:2] == ["-m", "training"]:
            return [sys.executable, "-m", "training", *_training(rest[2:], places)]
        if rest[:2] == ["-m", "training.demo"]:
            return [sys.executable, "-m", "training.demo", *rest[2:], "--data-root", str(places.fmnist),
                    "--epochs", "1", "--batch-size", "32"]
        if rest[:3] == ["-m", "pip", "wheel"]:  # no network in the tests: build with the installed setuptools
            return [sys.executable, *rest, "--no-deps", "--no-build-isolation", "--quiet"]
        if rest[:3] == ["-m", "pip", "install"]:  # the wheel just built, into the sandbox, without dependencies
            return [sys.executable, *rest[:3], "--no-deps", "--quiet", "--target", "site", *rest[3:]]
    raise KeyError(" ".join(words[:4]))


def slow(words: List[str]) -> bool:
    """Whether a command trains, evaluates or builds (seconds to minutes) rather than reads or lists."""
    text = " ".join(words)
    return bool(re.search(r"-m training (fit|check-recipe|evaluate|explore|plan|embed)|training\.demo|pip (wheel|in)|^make",
                          text) or words[0] in ("srun", "torchrun"))
