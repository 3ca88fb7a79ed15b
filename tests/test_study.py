"""The study aggregation rule (neuroscan/study.py) on hand-made slice sequences."""

import pytest

from neuroscan.study import (
    INCONCLUSIVE,
    AggregationRule,
    SliceAnswer,
    aggregate_series,
    aggregate_study,
    slice_order,
)


def answer(label: str | None, p: float = 0.9, **flags) -> SliceAnswer:
    """A slice called ``label`` at probability ``p`` (the rest spread over the other classes)."""
    if label is None:
        return SliceAnswer("x", error="corrupt_image")
    rest = (1 - p) / 3
    probabilities = {c: (p if c == label else rest) for c in ("glioma", "meningioma", "notumor", "pituitary")}
    return SliceAnswer("x", label, probabilities, **flags)


def series(*labels, **kwargs):
    return aggregate_series("1.2.3", [answer(x) if isinstance(x, str) or x is None else x for x in labels], **kwargs)


def test_two_adjacent_tumour_slices_make_a_tumour_verdict_with_their_key_slices():
    verdict = series("notumor", "glioma", "glioma", "notumor")
    assert verdict.verdict == "glioma" and verdict.key_slices == [1, 2]
    assert verdict.counted == 4 and verdict.left_out == 0 and verdict.failed == 0


def test_one_confident_slice_alone_is_not_a_diagnosis():
    verdict = series("notumor", "pituitary", "notumor", "glioma", "notumor")
    assert verdict.verdict == "notumor"
    assert set(verdict.key_slices) >= {1, 3}  # the most tumour-like slices are still shown first


def test_low_probability_and_left_out_slices_break_a_run():
    low = answer("glioma", p=0.4)
    out = answer("glioma", is_mri=False)
    off = answer("glioma", in_domain=False)
    for breaker in (low, out, off, None):
        assert series("glioma", breaker, "glioma").verdict == "notumor"


def test_a_tumour_run_outside_the_domain_makes_no_reassurance():
    """Two neighbouring slices outside the domain both called glioma: not a finding, but no `notumor` either."""
    off = answer("glioma", in_domain=False)
    verdict = series("notumor", off, off, "notumor", "notumor", "notumor")
    assert verdict.verdict == INCONCLUSIVE and verdict.key_slices == [1, 2]
    assert aggregate_study([verdict]) == INCONCLUSIVE
    not_mri = answer("glioma", is_mri=False)  # not a brain MRI at all: no hint of a tumour
    assert series("notumor", not_mri, not_mri, "notumor", "notumor", "notumor").verdict == "notumor"
    assert series("notumor", off, answer("meningioma", in_domain=False), "notumor").verdict == "notumor"
    assert series("glioma", "glioma", off, off).verdict == "glioma"  # a finding in the domain still decides
    strong = answer("meningioma", 0.99, in_domain=False)
    assert series(off, off, "notumor", strong, strong).key_slices == [3, 4]  # the strongest run is shown


def test_strongest_run_wins_and_the_study_takes_its_strongest_series():
    a = series("meningioma", "meningioma", "notumor", answer("glioma", 0.99), answer("glioma", 0.99),
               answer("glioma", 0.99))
    assert a.verdict == "glioma" and a.key_slices == [3, 4, 5] and a.score == pytest.approx(2.97)
    b = series("pituitary", "pituitary")
    assert aggregate_study([b, a]) == "glioma"


def test_mostly_out_of_domain_series_is_inconclusive_and_counted():
    verdict = series(answer("notumor", in_domain=False), answer("notumor", is_mri=False), None, "notumor")
    assert verdict.verdict == INCONCLUSIVE
    assert (verdict.counted, verdict.left_out, verdict.failed) == (1, 2, 1)
    assert aggregate_study([verdict]) == INCONCLUSIVE
    assert aggregate_study([verdict, series("notumor", "notumor")]) == "notumor"
    assert aggregate_study([]) == INCONCLUSIVE


def test_rule_thresholds_are_the_rule():
    rule = AggregationRule(threshold=0.95, min_adjacent=3)
    assert series("glioma", "glioma", "glioma", rule=rule).verdict == "notumor"  # p=0.9 < 0.95
    assert series("glioma", "glioma", rule=AggregationRule(min_adjacent=3)).verdict == "notumor"
    assert series(answer("glioma", 0.97), answer("glioma", 0.97), answer("glioma", 0.97), rule=rule).verdict == "glioma"


def test_slices_are_ordered_along_the_normal_not_by_instance_number():
    axial = (1, 0, 0, 0, 1, 0)  # normal +z: inferior to superior
    positions = [(0, 0, 10.0), (0, 0, -5.0), (0, 0, 2.5)]
    assert slice_order(positions, axial, [1, 2, 3]) == [1, 2, 0]
    sagittal = (0, 1, 0, 0, 0, -1)  # normal = y x -z = -x: ordered by -x
    assert slice_order([(3, 0, 0), (-1, 0, 0), (1, 0, 0)], sagittal, [1, 2, 3]) == [0, 2, 1]


def test_order_falls_back_to_instance_number_then_to_arrival():
    assert slice_order([(0, 0, 1), None, (0, 0, 3)], (1, 0, 0, 0, 1, 0), [3, 1, 2]) == [1, 2, 0]
    assert slice_order([None, None, None], None, [None, 2, 1]) == [2, 1, 0]
