"""What the study page shows of one analysed series: its slices as the viewer needs them, and the strip chart.

Pure functions of the worker's stored series result (``neuroscan.study_results.SeriesResult``),
so what a clinician reads on the page is tested without a browser.
"""

from dataclasses import dataclass
from typing import Any

from neuroscan.classes import NO_TUMOUR
from neuroscan.study_results import SeriesResult

KEY_COLOUR, SLICE_COLOUR, LEFT_OUT_COLOUR = "#b91c1c", "#1e3a8a", "#94a3b8"


@dataclass(frozen=True)
class SliceInfo:
    """One slice in anatomical order; ``note`` says why it did not count towards the verdict."""

    index: int
    instance_uid: str
    orthanc_id: str | None
    label: str | None
    tumour_probability: float | None
    key: bool
    note: str | None


def slice_infos(series: SeriesResult) -> list[SliceInfo]:
    """The series' slices in the worker's (anatomical) order, key slices marked."""
    keys = set(series.summary.get("key_slices", []))
    return [_info(index, answer, index in keys) for index, answer in enumerate(series.slices)]


def _info(index: int, answer: dict[str, Any], key: bool) -> SliceInfo:
    probabilities = answer.get("probabilities") or {}
    failed = answer.get("error") is not None or not probabilities
    note = ("could not be analysed" if failed else "not a brain MRI" if not answer.get("is_mri", True)
            else "outside the validated domain" if not answer.get("in_domain", True) else None)
    return SliceInfo(index=index, instance_uid=answer["instance_uid"], orthanc_id=answer.get("orthanc_id"),
                     label=None if failed else answer.get("label"),
                     tumour_probability=None if failed else round(1.0 - float(probabilities.get(NO_TUMOUR, 1.0)), 4),
                     key=key, note=note)


def strip_chart(slices: list[SliceInfo], current: int) -> dict[str, Any]:
    """ECharts options: tumour probability (1 - p(no tumour)) per slice, key slices in red, the current one marked."""
    points = [{"value": s.tumour_probability,
               "itemStyle": {"color": KEY_COLOUR if s.key else LEFT_OUT_COLOUR if s.note else SLICE_COLOUR},
               "symbolSize": 10 if s.key else 5} for s in slices]
    return {
        "animation": False,
        "grid": {"left": 48, "right": 16, "top": 24, "bottom": 36},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "category", "name": "slice", "nameLocation": "middle", "nameGap": 24,
                  "data": [str(s.index + 1) for s in slices]},
        "yAxis": {"type": "value", "min": 0, "max": 1, "name": "tumour probability"},
        "series": [{
            "name": "Tumour probability", "type": "line", "data": points, "showAllSymbol": True,
            "connectNulls": False, "lineStyle": {"color": SLICE_COLOUR},
            "markLine": {"symbol": "none", "silent": True, "label": {"formatter": "this slice"},
                         "lineStyle": {"color": "#0f766e", "type": "solid"}, "data": [{"xAxis": str(current + 1)}]},
        }],
    }
