"""From per-slice answers to a series and a study verdict: a pure function of what the model said.

A classifier answers every slice, and a whole series from skull base to vertex holds slices no
training image looked like, so one confident slice must not make a diagnosis. The rule, applied
to the slices of one series in anatomical order (:func:`slice_order`):

1. a slice *counts* when it was answered, is a brain MRI (``is_mri``) and is in the model's domain
   (``in_domain``, where the server reports it); the others are left out and counted;
2. a tumour class is *found* in a run of at least ``min_adjacent`` neighbouring slices (neighbours
   in the series: a left-out slice breaks the run) whose top class is that tumour class with a
   probability >= ``threshold``;
3. the series verdict is the found class whose best run has the largest summed probability; with
   none found it is ``notumor``, unless fewer than ``min_counted_fraction`` of its slices counted
   (a series mostly outside the validated domain says nothing) or brain MRI slices outside the
   domain call a tumour class as rule 2 would have found it (the model sees a tumour where it
   cannot be trusted, so it must not reassure): then it is ``inconclusive``;
4. the key slices are the best run's slices, or the best such run outside the domain, or else the
   ``key_slices`` slices with the highest tumour probability;
5. the study verdict is the tumour verdict of its strongest series; else ``notumor`` if any series
   was conclusive; else ``inconclusive``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

from neuroscan.classes import NO_TUMOUR, TUMOUR_CLASSES

INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class AggregationRule:
    """The documented thresholds of the rule above (module docstring)."""

    threshold: float = 0.5
    min_adjacent: int = 2
    min_counted_fraction: float = 0.5
    key_slices: int = 3


@dataclass(frozen=True)
class SliceAnswer:
    """What the server said of one slice, or why it could not say anything (``error``)."""

    instance_uid: str
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    is_mri: bool = True
    in_domain: bool = True
    error: str | None = None

    @classmethod
    def from_dict(cls, row: dict) -> SliceAnswer:
        """Back from :func:`dataclasses.asdict` (as the results store keeps it); other keys are ignored."""
        return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in row})

    @property
    def counts(self) -> bool:
        return self.error is None and self.label is not None and self.is_mri and self.in_domain

    @property
    def tumour_probability(self) -> float:
        """1 - p(notumor): the strip chart's value (0 for a slice without an answer)."""
        return 1.0 - self.probabilities.get(NO_TUMOUR, 1.0) if self.error is None else 0.0


@dataclass(frozen=True)
class SeriesVerdict:
    """A series' verdict and what it rests on; slice indices refer to the ordered slices."""

    series_uid: str
    verdict: str
    key_slices: list[int]
    slices: int
    counted: int
    left_out: int
    failed: int
    score: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> SeriesVerdict:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


def slice_order(positions: Sequence[Sequence[float] | None], orientation: Sequence[float] | None,
                instance_numbers: Sequence[int | None]) -> list[int]:
    """Indices of the slices sorted along the slice normal (inferior to superior for axial slices).

    The position along the normal is ImagePositionPatient . (row x column direction cosines); a
    series without orientation or with any slice missing a position falls back to InstanceNumber,
    then to the order given.
    """
    indices = list(range(len(positions)))
    if orientation is not None and len(orientation) == 6 and all(p is not None and len(p) == 3 for p in positions):
        normal = _cross(orientation[:3], orientation[3:])
        return sorted(indices, key=lambda i: (sum(a * b for a, b in zip(positions[i], normal)), i))
    return sorted(indices, key=lambda i: (instance_numbers[i] is None, instance_numbers[i] or 0, i))


def _cross(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def aggregate_series(series_uid: str, answers: Sequence[SliceAnswer],
                     rule: AggregationRule = AggregationRule()) -> SeriesVerdict:
    """The series verdict for ``answers`` in anatomical order (rule in the module docstring)."""
    counted = sum(a.counts for a in answers)
    failed = sum(a.error is not None for a in answers)
    runs = [(label, run) for label in TUMOUR_CLASSES for run in _runs(answers, label, rule)]
    common = {"series_uid": series_uid, "slices": len(answers), "counted": counted,
              "left_out": len(answers) - counted - failed, "failed": failed}
    if runs:
        label, run = _strongest(answers, runs)
        return SeriesVerdict(verdict=label, key_slices=run, score=round(_run_score(answers, label, run), 4), **common)
    unsure = [(label, run) for label in TUMOUR_CLASSES for run in _runs(answers, label, rule, outside_domain=True)]
    conclusive = answers and counted >= rule.min_counted_fraction * len(answers) and not unsure
    ranked = sorted(range(len(answers)), key=lambda i: -answers[i].tumour_probability)
    key_slices = _strongest(answers, unsure)[1] if unsure else sorted(ranked[: rule.key_slices])
    return SeriesVerdict(verdict=NO_TUMOUR if conclusive else INCONCLUSIVE, key_slices=key_slices, **common)


def _runs(answers: Sequence[SliceAnswer], label: str, rule: AggregationRule,
          outside_domain: bool = False) -> list[list[int]]:
    """Maximal runs of neighbouring counted slices (or, ``outside_domain``, of brain MRI slices outside the
    domain) calling ``label`` at >= threshold, long enough."""
    runs: list[list[int]] = []
    current: list[int] = []
    for index, answer in enumerate(answers):
        eligible = _outside_domain(answer) if outside_domain else answer.counts
        if eligible and answer.label == label and answer.probabilities.get(label, 0.0) >= rule.threshold:
            current.append(index)
            continue
        runs.append(current)
        current = []
    runs.append(current)
    return [run for run in runs if len(run) >= rule.min_adjacent]


def _outside_domain(answer: SliceAnswer) -> bool:
    """Answered and a brain MRI, but outside the validated domain: its class is a hint, not a finding."""
    return answer.error is None and answer.label is not None and answer.is_mri and not answer.in_domain


def _strongest(answers: Sequence[SliceAnswer], found: list[tuple[str, list[int]]]) -> tuple[str, list[int]]:
    """The (label, run) with the largest summed probability."""
    return max(found, key=lambda label_run: _run_score(answers, *label_run))


def _run_score(answers: Sequence[SliceAnswer], label: str, run: list[int]) -> float:
    return sum(answers[i].probabilities[label] for i in run)


def aggregate_study(series: Sequence[SeriesVerdict]) -> str:
    """The study verdict from its series' verdicts (rule 5 in the module docstring)."""
    found = [s for s in series if s.verdict in TUMOUR_CLASSES]
    if found:
        return max(found, key=lambda s: s.score).verdict
    return NO_TUMOUR if any(s.verdict == NO_TUMOUR for s in series) else INCONCLUSIVE
