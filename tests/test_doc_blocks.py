"""Every code block of README.md and docs/*.md runs (the rules are in ``tests/helpers/doc_blocks.py``).

Each document's blocks run in order in one sandbox folder: the repository's code and recipes linked in, a made-up
Fashion-MNIST and image folder, an empty zoo cache with the network forbidden (``ZOO_OFFLINE``,
``HF_HUB_OFFLINE``), so a block may use what an earlier block of its document wrote, as a reader would. Release
entries that a Python block names are put into that cache from a file made up in the publisher's layout (random
weights, converted by the zoo's own code), so nothing downloads. Documents whose blocks train or evaluate are
marked ``slow``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers.data import make_fashion_mnist
from tests.helpers.doc_blocks import OUTPUT, ROOT, RUN, Block, Places, blocks, commands, documents, join, slow, tiny

DOCS = documents()
LINKED = ("zoo", "training", "tests", "hubconf.py", "pyproject.toml", "Makefile", "LICENSE", "README.md")
SBATCH = """#!/usr/bin/env bash
# sbatch as the documented commands use it: --array=1-N (N >= 1) and --wrap CMD; nothing is submitted
for arg in "$@"; do case $arg in --array=1-*) [ "${arg#--array=1-}" -ge 1 ] || exit 1; n=ok ;; --wrap) w=ok ;; esac; done
[ "$n$w" = okok ] && echo "Submitted batch job 1 (stub)"
"""


def is_slow(path: Path) -> bool:
    found = blocks(path)
    return any(b.lang == "python" or (b.lang == "yaml") or (b.lang == "bash" and any(slow(c) for c in
               commands(b.text))) for b in found)


def test_every_block_is_run_or_marked_as_output(tmp_path):
    places = Places(tmp_path / "fmnist", tmp_path / "images")
    unknown = []
    for block in (b for path in DOCS for b in blocks(path)):
        if block.lang in OUTPUT:
            continue
        if block.lang not in RUN:
            unknown.append(f"{block.where}: ```{block.info} (run it: {', '.join(RUN)}; or mark an output ```text)")
        for words in commands(block.text) if block.lang == "bash" else []:
            try:
                tiny(words, places)
            except KeyError as err:
                unknown.append(f"{block.where}: no tiny variant for {err.args[0]!r} (teach tests/doc_blocks.tiny)")
        if block.lang == "yaml" and not {"axes", "model"} & set(yaml.safe_load(block.text) or {}):
            unknown.append(f"{block.where}: a YAML block that is neither an explore grid nor a recipe")
    assert not unknown, "blocks the doc test cannot run:\n" + "\n".join(unknown)


def test_the_parser_sees_every_fence_and_refuses_an_unclosed_one(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("a\n```python\nprint(1)\n```\n  ```bash\n  make demo \\\n    --x 1  # note\n  ```\n```text\nout\n```\n")
    found = blocks(doc)
    assert [(b.line, b.lang) for b in found] == [(2, "python"), (5, "bash"), (9, "text")]
    assert commands(found[1].text) == [["make", "demo", "--x", "1"]]
    doc.write_text("```python\nprint(1)\n")
    with pytest.raises(ValueError, match="never closed"):
        blocks(doc)
    # the README has each kind a newcomer copies from
    assert {"python", "bash"} <= {b.lang for b in blocks(ROOT / "README.md")}


def sandbox(tmp_path: Path) -> tuple[Path, Places, Dict[str, str]]:
    box = tmp_path / "box"
    box.mkdir()
    for name in LINKED:
        (box / name).symlink_to(ROOT / name)
    (box / "bench" / "results").mkdir(parents=True)
    for script in (ROOT / "bench").glob("*.py"):
        (box / "bench" / script.name).symlink_to(script)
    (box / "docs").mkdir()
    for page in (ROOT / "docs").glob("*.md"):  # copies: commands such as `plan --readme` rewrite them
        (box / "docs" / page.name).write_text(page.read_text())
    places = Places(make_fashion_mnist(tmp_path / "fmnist"), tmp_path / "images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 6)):
        for label, name in enumerate(("dark", "light")):
            (places.images / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 100, size=(28, 28)) + 120 * label
                Image.fromarray(pixels.astype(np.uint8), mode="L").save(places.images / split / name / f"{i}.png")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sbatch").write_text(SBATCH)
    (tmp_path / "bin" / "sbatch").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "HF_"))}
    env.update(PATH=f"{tmp_path / 'bin'}:{env['PATH']}", PYTHONPATH=str(ROOT), ZOO_CACHE=str(tmp_path / "cache"),
               HF_HOME=str(tmp_path / "hf"), ZOO_OFFLINE="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    return box, places, env


def cache_releases(text: str, env: Dict[str, str], monkeypatch) -> None:
    """Release entries the block names, converted into the sandbox's cache from made-up files in their layout."""
    import torch

    from tests.helpers.release_layouts import checkpoint
    from zoo.pretrained.releases import file_digests, install_release, release_folder
    from zoo.pretrained.weights_registry import open_registry

    monkeypatch.setenv("ZOO_CACHE", env["ZOO_CACHE"])
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    registry = open_registry()
    for name in set(re.findall(r"""load_encoder\(\s*["']([a-z0-9_.]+)["']""", text)) & set(registry.names()):
        entry = registry.get(name)
        if entry.kind != "release" or release_folder(entry).exists():
            continue
        file = Path(env["ZOO_CACHE"]).parent / f"{entry.name}.made-up"
        torch.save(checkpoint(entry.source["format"], "resnet50")[0], file)
        install_release(entry, file, downloaded_from=f"a made-up {entry.source['format']} file (doc test)",
                        digests=file_digests(file), consume=True)


def made_up_checkpoint(words, box: Path) -> None:
    """``import-legacy FILE --format F``: a file in F's layout (random ResNet-50 weights) where FILE is missing."""
    import torch

    from tests.helpers.release_layouts import checkpoint

    if "import-legacy" in words and "--format" in words:
        file = box / words[words.index("import-legacy") + 1]
        if not file.exists():
            torch.save(checkpoint(words[words.index("--format") + 1], "resnet50")[0], file)


def run(cmd, box: Path, env: Dict[str, str], block: Block, what: str, shell: bool = False) -> str:
    done = subprocess.run(cmd, cwd=box, env=env, shell=shell, executable="/bin/bash" if shell else None,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{block.where}: {what} exited {done.returncode}:\n{done.stdout[-3000:]}" \
                                 f"\n{done.stderr[-3000:]}"
    return done.stdout


def run_block(block: Block, box: Path, places: Places, env: Dict[str, str], monkeypatch, done: set) -> None:
    name = f"block_{block.path.stem}_{block.line}"
    if block.lang == "python":
        cache_releases(block.text, env, monkeypatch)
        (box / f"{name}.py").write_text(block.text)
        run([sys.executable, f"{name}.py"], box, env, block, "the Python block")
    elif block.lang == "bash":
        for words in commands(block.text):
            made_up_checkpoint(words, box)
            command = join(tiny(words, places))
            if command not in done:  # e.g. `explore GRID`, `--jobs` and `--collect` all check the grid
                run(command, box, env, block, command, shell=True)
                done.add(command)
    elif block.lang == "json":
        from zoo.pretrained.weights_registry import WeightsRegistry, registry_paths

        (box / f"{name}.json").write_text(block.text)
        monkeypatch.delenv("ZOO_REGISTRY", raising=False)
        registry = WeightsRegistry([*registry_paths(), box / f"{name}.json"])
        assert set(json.loads(block.text)["entries"]) <= set(registry.names()), block.where
    elif block.lang == "yaml":
        (box / f"{name}.yaml").write_text(block.text)
        kind = "explore" if "axes" in yaml.safe_load(block.text) else "fit"
        words = ["python", "-m", "training", kind, f"{name}.yaml"] if kind == "explore" else \
            ["python", "-m", "training", "fit", "--config", f"{name}.yaml"]
        command = join(tiny(words, places))
        run(command, box, env, block, command, shell=True)


@pytest.mark.parametrize("doc", [pytest.param(d, id=str(d.relative_to(ROOT)),
                                              marks=[pytest.mark.slow] if is_slow(d) else []) for d in DOCS])
def test_the_blocks_of_each_document_run(doc, tmp_path, monkeypatch):
    box, places, env, done = *sandbox(tmp_path), set()
    for block in blocks(doc):
        if block.lang not in OUTPUT:
            run_block(block, box, places, env, monkeypatch, done)


def test_the_cpu_settings_figures_come_from_the_step_counts_the_docs_name():
    """docs/benchmarks.md names the command behind its CPU-settings table; the results file it names must hold
    rows measured with exactly those step counts (a rerun with the script's defaults would not match the text)."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    command = re.search(r"`\.venv/bin/python bench/cpu_settings\.py ([^`]*)`", text)
    assert command, "docs/benchmarks.md no longer names the bench/cpu_settings.py command behind its table"
    words = command.group(1).split()
    steps, bf16_steps = int(words[words.index("--steps") + 1]), int(words[words.index("--bf16-steps") + 1])
    result = json.loads((ROOT / words[words.index("--out") + 1]).read_text())
    expected = [steps if r["precision"] == "32-true" or result["native_bf16"] else bf16_steps for r in result["rows"]]
    assert [r["steps"] for r in result["rows"]] == expected
    assert f"medians of {steps} fp32 steps and {bf16_steps} bf16 steps" in " ".join(text.split())


def test_the_readme_is_a_short_guide_in_one_python_spelling():
    """At most 300 lines, and every command a newcomer copies runs the interpreter `make demo` built."""
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 300
    programs = {words[0] for b in blocks(readme) if b.lang == "bash" for words in commands(b.text)}
    assert programs <= {".venv/bin/python", "make"}, programs
