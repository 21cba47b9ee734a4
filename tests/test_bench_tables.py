"""Re-running a benchmark with ``--markdown`` replaces its table and keeps the notes written beside it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _timing():
    spec = importlib.util.spec_from_file_location("timing", SCRIPTS / "timing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notes_after_the_table_survive_a_rerun(tmp_path: Path) -> None:
    doc = tmp_path / "bench.md"
    doc.write_text("# Bench\n\n| old row |\n\n## A/B of last week\n\nkept text\n\n## Earlier runs\n\n| run 1 |\n")
    _timing().write_table(doc, "# Bench\n\n| new row |\n")
    text = doc.read_text()
    assert "| new row |" in text and "| old row |" not in text
    assert text.index("| new row |") < text.index("## A/B of last week") < text.index("## Earlier runs")
    assert "kept text" in text and "| run 1 |" in text


def test_a_heading_the_table_writes_itself_is_not_kept_twice(tmp_path: Path) -> None:
    doc = tmp_path / "bench.md"
    doc.write_text("# Bench\n\n## Targets\n\nold targets\n\n## Notes\n\nhand-written\n")
    _timing().write_table(doc, "# Bench\n\n## Targets\n\nnew targets\n")
    text = doc.read_text()
    assert text.count("## Targets") == 1 and "old targets" not in text and "new targets" in text
    assert text.endswith("## Notes\n\nhand-written\n")


def test_a_new_file_holds_the_table_only(tmp_path: Path) -> None:
    doc = tmp_path / "new.md"
    _timing().write_table(doc, "# Bench\n\n| row |")
    assert doc.read_text() == "# Bench\n\n| row |\n"
