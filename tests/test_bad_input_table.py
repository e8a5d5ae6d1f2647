"""docs/bad-input.md's table is what the code says today: ``tests/helpers/bad_input_table.py`` runs each bad input for
real and the table in docs/bad-input.md must be its output."""

from tests.helpers.bad_input_table import ROOT, table


def test_the_bad_input_table_in_the_docs_is_generated_from_the_cases(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    page = (ROOT / "docs" / "bad-input.md").read_text()
    block = page.split("<!-- bad-input-table:", 1)[1].split("\n", 1)[1].split("<!-- /bad-input-table -->")[0]
    assert block.strip() == table(), "docs/bad-input.md's table is stale: paste `python -m tests.helpers.bad_input_table`"
