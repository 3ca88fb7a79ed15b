"""The packaged healthy heads added to the no-tumour class (training/healthy.py)."""

from pathlib import Path

import numpy as np
import pytest

from neuroscan.classes import CLASSES, NO_TUMOUR
from training import external_sources
from training.healthy import TEMPLATES, template_samples, template_slices


def head_share(image) -> float:
    """Share of the square image that is not black background."""
    return float((np.asarray(image.convert("L")) > 25).mean())


def test_both_templates_give_tumour_free_slices_in_three_planes() -> None:
    per_template = {name: template_slices(name) for name in TEMPLATES}
    assert set(per_template) == {"MNI152 2009a", "Colin27"}
    assert all(len(slices) >= 150 for slices in per_template.values())
    samples = template_samples()
    assert len(samples) == sum(map(len, per_template.values()))
    assert {label for _, label in samples} == {CLASSES.index(NO_TUMOUR)}


def test_colin27_is_the_whole_head_not_a_stripped_brain() -> None:
    """Colin27 keeps skull and scalp (what real series show at the skull base and vertex); MNI152 is stripped,
    so at the same square field of view Colin27's head fills clearly more of the picture."""
    share = {name: np.median([head_share(s) for s in template_slices(name)]) for name in TEMPLATES}
    print(f"median head share of the picture: {share}")
    assert share["Colin27"] > 1.2 * share["MNI152 2009a"]


def test_a_missing_colin27_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(external_sources, "COLIN27_FILE", tmp_path / "ch2.nii.gz")
    with pytest.raises(FileNotFoundError, match="mricron-data"):
        template_samples()


def test_unknown_template_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown templates"):
        template_samples(("Colin28",))
