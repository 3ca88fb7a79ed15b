"""Pieces the worklist and the study page share: verdict names and the verdict badge."""

from nicegui import ui

from dashboard.findings import DISPLAY_NAMES
from neuroscan.classes import NO_TUMOUR, TUMOUR_CLASSES
from neuroscan.study import INCONCLUSIVE

VERDICT_NAMES: dict[str, str] = {**DISPLAY_NAMES, INCONCLUSIVE: "Inconclusive"}


def verdict_text(verdict: str | None) -> str:
    """``Suspected glioma`` for a tumour: the model suspects, the clinician diagnoses."""
    if verdict in TUMOUR_CLASSES:
        return f"Suspected {VERDICT_NAMES[verdict].lower()}"
    return VERDICT_NAMES.get(verdict or "", "No verdict")


def verdict_badge(verdict: str | None, otherwise: str) -> ui.badge:
    """Red for a suspected tumour, amber for inconclusive, green for no tumour, grey (``otherwise``) without one."""
    if verdict is None:
        return ui.badge(otherwise, color="grey-7").mark("verdict-badge")
    colour = "red-9" if verdict in TUMOUR_CLASSES else "green-9" if verdict == NO_TUMOUR else "amber-10"
    return ui.badge(verdict_text(verdict), color=colour).classes("text-sm").mark("verdict-badge")
