"""External validation: slice orientation, the brain-slice rule, the metric arithmetic, the reference
table against the data, and one real run over a patient volume."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from neuroscan.classes import NO_TUMOUR
from neuroscan.weights import load_weights
from training import external
from training.external_card import external_section, pooled, wrong_by_domain
from training.external_coverage import NOTUMOR, TrainingNeighbours
from training.external_heatmaps import heatmap_hits, peak_quadrant, read_sites
from training.external_metrics import (
    SliceResult,
    flagged_share,
    read_reference,
    readings,
    summarise,
    volume_targets,
)
from training.external_series import series_verdict, served_rule
from training.external_sources import ExternalDataMissing, colin27_file, mni152_file
from training.external_volumes import (
    HEAD_LEVEL,
    MIN_HEAD_FRACTION,
    axial_slices,
    is_brain_slice,
    load_nifti,
    radiological_slice,
)
from training.split import load_split

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = REPO.parent / "shared" / "data" / "external"
WEIGHTS = REPO / "model_store" / "brain_tumor.safetensors"


@pytest.fixture(scope="module")
def external_root() -> Path:
    if not EXTERNAL.is_dir():
        pytest.fail(f"external MRI volumes not found at {EXTERNAL}")
    return EXTERNAL


def test_slices_come_out_anterior_up_patient_right_on_image_left_inferior_first(tmp_path):
    """A volume stored posterior/inferior/right (not RAS) with two markers at known RAS voxels."""
    canonical = np.zeros((10, 12, 8), np.float32)  # x to the patient's right, y anterior, z superior
    canonical[8, 10, 6] = 1000  # right, anterior, superior
    canonical[1, 1, 1] = 500  # left, posterior, inferior
    stored = canonical.transpose(1, 2, 0)[::-1, ::-1, :]  # axes: P->A reversed, I->S reversed, R
    affine = np.array([[0, 0, 1, 0], [-1, 0, 0, 11], [0, -1, 0, 7], [0, 0, 0, 1]], float)
    assert nib.aff2axcodes(affine) == ("P", "I", "R")
    nib.save(nib.Nifti1Image(np.ascontiguousarray(stored), affine), tmp_path / "v.nii.gz")

    data = load_nifti(tmp_path / "v.nii.gz")
    assert data.shape == (10, 12, 8)
    superior, inferior = radiological_slice(data, 6), radiological_slice(data, 1)
    assert np.unravel_index(superior.argmax(), superior.shape) == (1, 1)  # top-left: anterior, patient right
    assert np.unravel_index(inferior.argmax(), inferior.shape) == (10, 8)  # bottom-right: posterior, left
    assert superior.shape == (12, 10)  # rows run anterior-posterior, columns right-left
    windowed = axial_slices(data)
    assert len(windowed) == 8 and windowed[6].dtype == np.uint8 and windowed[6][1, 1] == 255


def test_brain_slice_needs_enough_head_pixels():
    side = 100
    blank = np.zeros((side, side), np.uint8)
    just_enough, too_few, dim = blank.copy(), blank.copy(), blank.copy()
    just_enough.flat[: int(MIN_HEAD_FRACTION * side * side)] = 200
    too_few.flat[: int(MIN_HEAD_FRACTION * side * side) - 1] = 200
    dim[:] = HEAD_LEVEL  # at the level is background, not head
    assert is_brain_slice(just_enough)
    assert not is_brain_slice(too_few) and not is_brain_slice(dim)


def result(k: int, reading: str, label: str, confidence: float, is_mri: bool = True,
           in_domain: bool = True) -> SliceResult:
    mri_reason = None if is_mri else "features far from training slices"
    return SliceResult(k, reading, label, confidence, mri_reason, mri_reason or (None if in_domain else "unlike"))


def test_metric_arithmetic_on_a_hand_made_table():
    results = [
        result(0, "yes", "glioma", 0.8), result(1, "yes", "meningioma", 0.7),
        result(2, "yes", NO_TUMOUR, 0.95), result(3, "yes", NO_TUMOUR, 0.6, is_mri=False),
        result(4, "no", "pituitary", 0.99, is_mri=False), result(5, "no", NO_TUMOUR, 0.9),
        result(6, "no", NO_TUMOUR, 0.97), result(7, "unsure", "pituitary", 0.5),
    ]
    summary = summarise(results)
    assert summary["brain_slices"] == 8 and summary["unsure_slices"] == 1
    assert (summary["tumour_called_tumour"], summary["tumour_slices"], summary["sensitivity"]) == (2, 4, 0.5)
    assert (summary["tumour_free_called_tumour"], summary["tumour_free_slices"]) == (1, 3)
    assert summary["false_positive_rate"] == pytest.approx(1 / 3)
    assert summary["wrong_answers"] == 3  # two misses and one false alarm; the unsure slice is no error
    assert summary["wrong_confidence"] == {"max": 0.99, "median": 0.95}
    assert summary["confident_notumor_on_tumour"] == 1
    assert summary["flagged_not_mri"] == 2
    assert summary["labels"] == {"glioma": 1, "meningioma": 1, NO_TUMOUR: 4, "pituitary": 2}
    empty = summarise([])
    assert empty["sensitivity"] is None and empty["wrong_confidence"] == {"max": None, "median": None}


def test_in_domain_counts_and_the_per_volume_targets():
    results = [
        result(0, "yes", "glioma", 0.8), result(1, "yes", NO_TUMOUR, 0.95, in_domain=False),
        result(2, "yes", NO_TUMOUR, 0.92), result(3, "yes", "glioma", 0.9),
        result(4, "no", "pituitary", 0.99, in_domain=False), result(5, "no", "pituitary", 0.9),
        result(6, "no", NO_TUMOUR, 0.97, is_mri=False), result(7, "no", NO_TUMOUR, 0.97),
        result(8, "no", NO_TUMOUR, 0.97), result(9, "no", NO_TUMOUR, 0.97),
    ]
    summary = summarise(results)
    assert (summary["tumour_free_called_tumour"], summary["tumour_free_called_tumour_in_domain"]) == (2, 1)
    assert summary["false_positive_rate_in_domain"] == pytest.approx(1 / 6)
    assert (summary["confident_notumor_on_tumour"], summary["confident_notumor_on_tumour_in_domain"]) == (2, 1)
    assert (summary["flagged_not_mri"], summary["flagged_out_of_domain"]) == (1, 3)
    assert volume_targets(summary) == {"sensitivity": False, "false_positives_in_domain": True,
                                       "no_confident_notumor_in_domain": False}
    assert flagged_share([summary, summarise([result(0, "no", NO_TUMOUR, 0.9)] * 10)]) == pytest.approx(3 / 20)
    assert volume_targets(summarise([]))["sensitivity"] is None


def test_reference_rows_must_cover_the_volume_once_in_order():
    def row(first: int, last: int, tumour: str = "no") -> dict:
        return {"volume": "v", "sequence": "s", "k_first": first, "k_last": last, "tumour": tumour}

    assert readings([row(0, 1), row(2, 2, "yes")], 3) == ["no", "no", "yes"]
    for rows, slices in (([row(0, 1), row(3, 4)], 5), ([row(0, 2), row(2, 4)], 5), ([row(0, 1)], 3),
                         ([row(0, 2, "maybe")], 3)):
        with pytest.raises(ValueError):
            readings(rows, slices)


def data_slice_counts(root: Path) -> dict[tuple[str, str], int]:
    """(volume, sequence) -> axial slices, for the patient volumes and the packaged MRI."""
    counts = {(path.parent.name, path.name.removesuffix(".nii.gz")):
              nib.as_closest_canonical(nib.load(path)).shape[2] for path in sorted(root.glob("*/*.nii.gz"))}
    counts[("mni152-2009a-sym", "t1")] = nib.load(mni152_file()).shape[2]
    counts[("colin27", "t1")] = nib.load(colin27_file()).shape[2]
    counts[("MR_small.dcm", "t2")] = 1
    return counts


def test_reference_table_matches_the_data(external_root):
    reference = read_reference()
    counts = data_slice_counts(external_root)
    assert len(counts) == 11 and set(reference) == set(counts)  # no volume unread, no stale rows
    for key, rows in reference.items():
        assert len({row["collection"] for row in rows}) == 1, key
        assert len(readings(rows, counts[key])) == counts[key]
    assert "yes" in readings(reference[("tcga-fg-6692", "t1c")], 26)


def test_one_real_volume_gives_the_expected_slice_counts(external_root, tmp_path):
    (tmp_path / "tcga-fg-6692").mkdir()
    (tmp_path / "tcga-fg-6692" / "t1c.nii.gz").symlink_to(external_root / "tcga-fg-6692" / "t1c.nii.gz")
    report = external.run(WEIGHTS, tmp_path, packaged=False)
    [row] = report["volumes"]
    assert (row["collection"], row["volume"], row["sequence"], row["packaged"]) == (
        "tcga-lgg", "tcga-fg-6692", "t1c", False)
    assert row["slices"] == 26 and row["brain_slices"] == 26
    assert (row["tumour_slices"], row["tumour_free_slices"], row["unsure_slices"]) == (5, 19, 2)
    assert [s["k"] for s in row["per_slice"]] == list(range(26))
    assert row["flagged_not_mri"] == sum(s["mri_reason"] is not None for s in row["per_slice"])
    assert [s["reading"] for s in row["per_slice"][14:21]] == ["unsure"] + ["yes"] * 5 + ["unsure"]
    assert report["model_version"] == load_weights(WEIGHTS).meta.version
    assert row["flagged_out_of_domain"] == sum(s["domain_reason"] is not None for s in row["per_slice"])
    assert all(s["domain_reason"] for s in row["per_slice"] if s["mri_reason"])  # not an MRI: not in domain

    json_path, md_path = external.write_report(report, "test", tmp_path / "reports")
    assert json_path.is_file() and md_path.read_text().count("| tcga-lgg | tcga-fg-6692 | t1c | 26 |") == 1


def test_a_missing_external_folder_is_one_line_naming_the_setting(tmp_path):
    with pytest.raises(ExternalDataMissing):
        external.run(WEIGHTS, tmp_path / "absent", packaged=False)
    with pytest.raises(SystemExit) as exit_info:
        external.main(["--external", str(tmp_path / "absent")])
    assert "EXTERNAL" in str(exit_info.value) and "\n" not in str(exit_info.value)


def card_report(hits: int) -> dict:
    """One volume: ten tumour slices (``hits`` of them called glioma) and two tumour-free ones called pituitary."""
    results = [result(k, "yes", "glioma" if k < hits else NO_TUMOUR, 0.95) for k in range(10)]
    results += [result(k, "no", "pituitary", 0.9) for k in (10, 11)]
    row = {"packaged": False, "collection": "c", "volume": "v", "sequence": "t1", "slices": 12,
           **summarise(results), "per_slice": [vars(r) for r in results]}
    return {"model_version": "9.9.9", "volumes": [row]}


def test_card_section_states_the_verdict_from_the_numbers():
    failing = "\n".join(external_section(card_report(3), 0.99))
    assert "misses the external targets on 1 of 1 patient volumes" in failing
    assert "3/10 (30%)" in failing and "7 slices showing the tumour" in failing
    assert "2/2 (100%) of the slices without one a tumour (as `pituitary` 2)" in failing
    assert ("- v/t1: sensitivity 30%, 40 points short of 70%; in-domain false positives 100%, 80 points over "
            "20%; 7 tumour slices `notumor` >= 0.9 in domain, target 0") in failing
    assert "What this means for a clinician" in failing
    alarms_only = "\n".join(external_section(card_report(10), 0.99))
    assert "- v/t1: in-domain false positives 100%, 80 points over 20%\n" in alarms_only
    report = card_report(10)
    report["volumes"][0].update(tumour_free_called_tumour_in_domain=0, false_positive_rate_in_domain=0.0)
    assert "meets the external targets on every patient volume" in "\n".join(external_section(report, 0.99))


def test_card_compares_each_volume_before_and_after():
    lines = "\n".join(external_section(card_report(10), 0.99, before=[card_report(3)]))
    assert "model 9.9.9 -> 9.9.9" in lines
    assert "| v | t1 | 3/10 (30%) -> 10/10 (100%) | 2/2 (100%) -> 2/2 (100%) | 7 -> 0 |" in lines
    chain = "\n".join(external_section(card_report(10), 0.99, before=[card_report(3), card_report(5)]))
    assert "| v | t1 | 3/10 (30%) -> 5/10 (50%) -> 10/10 (100%) |" in chain
    assert "| **all** |  | 3/10 (30%) -> 5/10 (50%) -> 10/10 (100%) |" in chain


def test_wrong_answers_are_counted_apart_inside_and_outside_the_domain():
    def answer(reading, label, outside=False):
        return {"k": 0, "reading": reading, "label": label, "confidence": 0.9, "mri_reason": None,
                "domain_reason": "unlike" if outside else None}
    rows = [{"per_slice": [answer("yes", NO_TUMOUR), answer("yes", "glioma"), answer("no", "pituitary", True),
                           answer("no", NO_TUMOUR, True), answer("unsure", NO_TUMOUR), answer("no", NO_TUMOUR)]}]
    assert wrong_by_domain(rows) == {True: (1, 3), False: (1, 2)}


def test_the_shipped_model_holds_up_better_than_earlier_ones_on_other_collections(external_root):
    """The external regression check: 1.1.0 called 32% of the tumour slices a tumour and answered 109
    of them `notumor` >= 0.9 with `in_domain: true` (its not-MRI check); 2.0.0 60% and 15, 2.1.0 86%
    and 5 with 21% of the tumour-free slices called a tumour in domain, 2.2.0 85%, 3 and 18.5%, 2.3.0 85%,
    3 and 16% (MODEL_CARD.md). Putting any older weight file back fails here. The not-MRI check flags 0 of the
    494 patient slices (2.0.0 by the feature distance alone: 29, all through the lesion)."""
    patients = external.run(WEIGHTS, external_root, packaged=False)["volumes"]
    totals = pooled(patients)
    sensitivity = totals["tumour_called_tumour"] / totals["tumour_slices"]
    false_rate = totals["tumour_free_called_tumour_in_domain"] / totals["tumour_free_slices"]
    not_mri = totals["flagged_not_mri"] / totals["brain_slices"]
    print(f"external: sensitivity {sensitivity:.1%}, in-domain false positives {false_rate:.1%}, "
          f"confident notumor in domain {totals['confident_notumor_on_tumour_in_domain']}, not-MRI {not_mri:.1%}")
    assert sensitivity >= 0.75
    assert false_rate <= 0.175  # 2.3.0: 32 of 200; 2.2.0: 37
    assert totals["confident_notumor_on_tumour_in_domain"] <= 4
    assert not_mri <= 0.01  # issue 10: brain MRI from other sources is not called "not an MRI"
    # The heatmap beside a tumour answer points at the lesion: its peak lies on the lesion's side of the head on
    # 195 of 2.3.0's 203 hits (chance: a half); a mirrored heatmap fails here.
    assert sum(row["heatmap_on_lesion_side"] for row in patients) >= 0.85 * totals["tumour_called_tumour"]


def test_series_verdict_needs_two_neighbouring_in_domain_tumour_slices_and_names_its_key_slices():
    """The PACS worker's rule over an external volume's brain slices (training/external_series.py)."""
    lone = [result(0, "no", NO_TUMOUR, 0.9), result(1, "yes", "glioma", 0.9), result(2, "yes", NO_TUMOUR, 0.8)]
    assert series_verdict(lone)["verdict"] == NO_TUMOUR  # one glioma slice is no finding
    broken = [*lone[:2], result(2, "yes", "glioma", 0.9, in_domain=False), result(3, "no", NO_TUMOUR, 0.9)]
    assert series_verdict(broken)["verdict"] == NO_TUMOUR  # an out-of-domain neighbour does not count
    found = series_verdict([*lone[:2], result(2, "yes", "glioma", 0.8), result(3, "no", NO_TUMOUR, 0.9)])
    assert found == {"verdict": "glioma", "tumour_found": True, "counted": 4, "left_out": 0, "key_slices": [1, 2],
                     "key_slices_on_tumour": 2}
    outside = series_verdict([result(k, "yes", "glioma", 0.9, in_domain=k == 0) for k in range(4)])
    assert outside["verdict"] == "inconclusive" and outside["left_out"] == 3


def test_the_series_rule_measured_is_the_one_the_worker_is_configured_with(tmp_path):
    config = tmp_path / "pacs.toml"
    config.write_text("[pacs]\nthreshold = 0.95\nmin_adjacent = 3\nmin_counted_fraction = 0.5\n")
    rule = served_rule(config)
    assert (rule.threshold, rule.min_adjacent) == (0.95, 3)
    two = [result(0, "yes", "glioma", 0.96), result(1, "yes", "glioma", 0.96)]
    assert series_verdict(two, rule)["verdict"] == NO_TUMOUR and series_verdict(two)["verdict"] == "glioma"


def test_card_gives_each_patient_series_its_verdict():
    report = card_report(3)
    report["volumes"][0]["series"] = series_verdict([SliceResult(**row) for row in report["volumes"][0]["per_slice"]])
    section = "\n".join(external_section(report, 0.99))
    assert "a tumour class in 1 of 1 patient series (`glioma` 1)" in section and "by chance" not in section
    assert "| v | t1 | `glioma` | 12 / 0 | 0-2 | 3 of 3 |" in section
    report["volumes"][0]["series"].update(key_slices=[10, 11], key_slices_on_tumour=0)
    section = "\n".join(external_section(report, 0.99))
    assert "In 1 of them (v/t1) none of the key slices" in section and "| 10-11 | 0 of 2 |" in section


def unit(rows: list[list[float]]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows), dim=1)


def test_training_coverage_is_the_notumor_share_of_the_nearest_training_slices():
    neighbours = TrainingNeighbours(unit([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]]), torch.tensor([NOTUMOR, NOTUMOR, 0, 3]),
                                    k=2)
    assert neighbours.base_rate == 0.5
    assert neighbours.notumor_share_of_features(unit([[1, 0.05], [0.05, 1], [0.7, 0.7]])) == [1.0, 0.0, 0.5]
    with pytest.raises(ValueError):
        neighbours.notumor_share([np.zeros((8, 8), np.uint8)])  # no feature extractor to look with


def test_look_neighbours_of_real_slices_are_of_their_own_kind(mri_root):
    """The ImageNet features (never trained on these labels) find the training slices a slice looks like:
    a validation slice's nearest training slices are almost all of its own kind, since the data set's
    classes come from different collections; so the coverage measure sees what the data set holds."""
    split = load_split()
    neighbours = TrainingNeighbours.from_samples(split.samples(mri_root, "train")[::6])
    val = split.samples(mri_root, "val")[::25]
    shares = neighbours.notumor_share([np.asarray(Image.open(s.path).convert("L")) for s in val])
    healthy = [share for share, s in zip(shares, val) if s.label == NOTUMOR]
    tumour = [share for share, s in zip(shares, val) if s.label != NOTUMOR]
    print(f"tumour-free neighbours: {np.mean(healthy):.0%} of a healthy slice's, {np.mean(tumour):.0%} of a tumour slice's")
    assert len(healthy) >= 10 and len(tumour) >= 30
    assert np.mean(healthy) > 0.6 and np.mean(tumour) < 0.1


def test_card_says_whether_the_errors_lie_where_the_data_set_lacks_their_kind():
    report = card_report(3)  # 3 hits, 7 misses, 2 tumour-free slices called pituitary
    for s in report["volumes"][0]["per_slice"]:
        s["notumor_neighbours"] = {"no": 0.05, "yes": 0.9 if s["label"] == NO_TUMOUR else 0.3}[s["reading"]]
    assert "Where the errors lie" not in "\n".join(external_section(report, 0.99))  # not measured, not shown
    report["training_notumor_share"] = 0.3
    section = "\n".join(external_section(report, 0.99))
    assert "The false alarms of v/t1 lie where the data set holds under half its share" in section
    assert "| v/t1 | 2: 5% | 0 | 3: 30% | 7: 90% |" in section
    assert "Tumour slices answered `notumor` have 90% tumour-free neighbours, those called a tumour 30%" in section
    assert "the misses lie where tumours like these are scarce" in section
    for s in report["volumes"][0]["per_slice"]:
        s["notumor_neighbours"] = 0.3
    section = "\n".join(external_section(report, 0.99))
    assert "The false alarms of" not in section and "coverage does not explain them" in section


def test_heatmap_peak_quadrant_is_read_in_the_radiological_view():
    """Anterior is up and the patient's right is on the image's left; the quadrant is the head's, not the image's."""
    pixels = np.zeros((224, 224, 3), np.uint8)
    pixels[20:120, 100:200] = 200  # a head in the upper right of the picture
    cam = np.zeros((7, 7), np.float32)
    cam[0, 3] = 1.0  # hot in the picture's upper middle: the head's upper left
    assert peak_quadrant(cam, pixels) == "anterior right"
    cam[:] = 0
    cam[3, 6] = 1.0  # lower right of the head (rows 20-119: its middle is row 70)
    assert peak_quadrant(cam, pixels) == "posterior left"
    assert peak_quadrant(cam, np.zeros_like(pixels)) is None


def test_heatmap_hits_count_the_tumour_answers_pointing_at_the_lesion():
    slices = [SliceResult(0, "yes", "glioma", 0.9, None, heatmap_quadrant="anterior right"),
              SliceResult(1, "yes", "meningioma", 0.9, None, heatmap_quadrant="posterior right"),
              SliceResult(2, "yes", "glioma", 0.9, None, heatmap_quadrant="anterior left"),
              SliceResult(3, "yes", NO_TUMOUR, 0.9, None, heatmap_quadrant="anterior right"),  # a miss: not counted
              SliceResult(4, "no", "glioma", 0.9, None, heatmap_quadrant="anterior right")]  # a false alarm
    assert heatmap_hits(slices, "anterior right") == {"heatmap_on_lesion_side": 2, "heatmap_in_lesion_quadrant": 1}
    assert heatmap_hits(slices, None) == {"heatmap_on_lesion_side": None, "heatmap_in_lesion_quadrant": None}


def test_every_patient_volume_has_a_lesion_site(external_root):
    sites = read_sites()
    assert set(sites) == {path.name for path in external_root.iterdir() if path.is_dir()}
    assert set(sites.values()) <= {f"{a} {b}" for a in ("anterior", "posterior") for b in ("right", "left")}


def test_card_says_where_the_heatmap_points():
    report = card_report(4)
    assert "Where the heatmap points" not in "\n".join(external_section(report, 0.99))  # no site: not shown
    report["volumes"][0].update(heatmap_on_lesion_side=3, heatmap_in_lesion_quadrant=2)
    section = "\n".join(external_section(report, 0.99))
    assert "side in 3/4 (75%) and in the lesion's quadrant in 2/4 (50%)" in section
    assert "it shows mostly the lesion" in section and "| v | t1 | 4 | 3 | 2 |" in section
    report["volumes"][0].update(heatmap_in_lesion_quadrant=1)
    assert "it shows often not the lesion" in "\n".join(external_section(report, 0.99))
