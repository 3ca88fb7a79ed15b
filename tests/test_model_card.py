"""The model card is rendered from the committed reports, never edited by hand (training/model_card.py)."""

import difflib
import shutil
from pathlib import Path

from training import model_card


def test_committed_model_card_is_what_the_committed_reports_render(tmp_path: Path) -> None:
    """A hand edit, or reports or notes changed without re-rendering, would leave the card saying what the
    reports do not; a fresh clone has no training logs, so the 1.x section is kept from the card, as there."""
    out = tmp_path / "MODEL_CARD.md"
    shutil.copy(model_card.CARD, out)
    model_card.main(["--out", str(out)])
    committed, rendered = model_card.CARD.read_text(), out.read_text()
    diff = "".join(difflib.unified_diff(committed.splitlines(True), rendered.splitlines(True), "committed", "rendered"))
    assert rendered == committed, diff[:3000]
