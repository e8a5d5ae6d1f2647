"""README's "What a bad input gets" table is what the code says today: ``tests/bad_input_table.py`` runs each bad
input for real and the table in README must be its output."""

from tests.bad_input_table import ROOT, table


def test_readme_bad_input_table_is_generated_from_the_cases(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- bad-input-table:", 1)[1].split("\n", 1)[1].split("<!-- /bad-input-table -->")[0]
    assert block.strip() == table(), "README's bad-input table is stale: paste `python -m tests.bad_input_table`"
