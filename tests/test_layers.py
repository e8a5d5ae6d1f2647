"""The tree's layers: no import circle, and no import from a lower layer to a higher one.

The whole tree is ``bench`` above ``training`` above ``zoo`` (``hubconf`` beside ``bench``, on ``zoo`` alone).
Inside ``zoo``: the base (errors, values, atomic writes, images, the method record, the part registry) at the
bottom, the five characteristics' parts above it, the method rows and their builder above those, the pretrained
weights side above that, and the package's facade on top. Inside ``training``: ``pretrain`` at the bottom;
``downstream``, ``release`` and ``plan`` beside each other above it; the command line, the demo, ``ship_weights``,
the evaluate command and ``explore`` on top, the only place that composes the layers below.
Imports are read with ``ast`` (``tests/helpers/import_graph.py``), those inside functions included.
"""

from __future__ import annotations

import re

import pytest

from tests.helpers.import_graph import cycles, imports, module_files

#: (tree, layer, pattern): the first pattern a module name matches gives its layer; higher numbers sit higher
LAYERS = [
    ("zoo", 0, r"zoo\.(errors|values|atomic|images|spec|part_registry|version|checkpoint_file)$"),
    ("zoo", 1, r"zoo\.parts(\..+)?$"),
    ("zoo", 2, r"zoo\.(methods|build)$"),
    ("zoo", 3, r"zoo\.pretrained(\..+)?$"),
    ("zoo", 4, r"zoo$"),
    ("training", 0, r"training\.pretrain(\..+)?$"),
    ("training", 1, r"training\.(downstream|release|plan)(\..+)?$"),
    ("training", 2, r"training(\.(cli|__main__|demo|ship_weights|[a-z_]+_command)|\.explore(\..+)?)?$"),
    ("bench", 0, r"bench\..+$"),
    ("hubconf", 0, r"hubconf$"),
]
#: the trees, bottom first: a module may import its own tree and the trees below it
TREE_ORDER = {"zoo": 0, "training": 1, "bench": 2, "hubconf": 2}


def place(module: str) -> tuple:
    for tree, layer, pattern in LAYERS:
        if re.match(pattern, module):
            return tree, layer
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_layers.py")


GRAPH = imports()


def test_every_module_has_a_layer():
    for module in module_files():
        place(module)


@pytest.mark.parametrize("tree", ["zoo", "training", None])
def test_no_import_circle(tree):
    graph = GRAPH if tree is None else {m: {t for t in ts if place(t)[0] == tree}
                                        for m, ts in GRAPH.items() if place(m)[0] == tree}
    assert cycles(graph) == []


def test_no_import_runs_up():
    upward = []
    for module, targets in GRAPH.items():
        tree, layer = place(module)
        for target in targets:
            other, other_layer = place(target)
            if TREE_ORDER[other] > TREE_ORDER[tree] or (other == tree and other_layer > layer):
                upward.append(f"{module} -> {target}")
    assert upward == []
    assert "hubconf" not in {t for ts in GRAPH.values() for t in ts}
    assert {place(t)[0] for t in GRAPH["hubconf"]} == {"zoo"}


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path):
    """The reader itself: a planted circle (one import inside a function) and an upward import are found."""
    from tests.helpers.import_graph import imports as read

    (tmp_path / "zoo" / "parts").mkdir(parents=True)
    (tmp_path / "training").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "hubconf.py").write_text("import zoo\n")
    (tmp_path / "zoo" / "__init__.py").write_text("from zoo.parts import a\n")
    (tmp_path / "zoo" / "parts" / "__init__.py").write_text("")
    (tmp_path / "zoo" / "parts" / "a.py").write_text("def f():\n    from zoo.parts import b\n")
    (tmp_path / "zoo" / "parts" / "b.py").write_text("from . import a\nimport zoo\n")
    graph = read(tmp_path)
    assert cycles(graph) == [["zoo", "zoo.parts.a", "zoo.parts.b"]]
    assert "zoo" in graph["zoo.parts.b"] and place("zoo")[1] > place("zoo.parts.b")[1]


def test_version_matches_pyproject():
    from pathlib import Path

    import zoo

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"$', text, re.M).group(1) == zoo.__version__
