"""The deliberate-bug list (tests/mutants.py, docs/testing.md) stays runnable as the code changes."""
from pathlib import Path

import pytest
from mutants import MUTANTS, ROOT


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: f"{Path(m.path).stem}:{m.old[:40]}")
def test_each_mutant_changes_one_existing_line_and_names_an_existing_test(mutant):
    text = (ROOT / mutant.path).read_text(encoding="utf-8")
    assert text.count(mutant.old) == 1, f"{mutant.path}: {mutant.old!r} should occur exactly once"
    assert "\n" not in mutant.old and mutant.old != mutant.new
    file, _, name = mutant.test.partition("::")
    assert f"def {name.split('[')[0]}(" in (ROOT / file).read_text(encoding="utf-8"), mutant.test


def test_the_table_in_docs_testing_md_lists_every_mutant():
    doc = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    for k, mutant in enumerate(MUTANTS, 1):
        row = next((line for line in doc.splitlines() if line.startswith(f"| {k} | `{mutant.path}:")), "")
        assert f"`{mutant.old}` → `{mutant.new}`" in row, f"mutant {k} ({mutant.path}) is not row {k} of the table"
