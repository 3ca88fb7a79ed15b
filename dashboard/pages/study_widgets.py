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


def verdict_colour(verdict: str | None) -> str:
    """Quasar's colour for a verdict: red a suspected tumour, amber inconclusive, green no tumour, grey none."""
    if verdict is None:
        return "grey-7"
    return "red-9" if verdict in TUMOUR_CLASSES else "green-9" if verdict == NO_TUMOUR else "amber-10"


def verdict_badge(verdict: str | None, otherwise: str) -> ui.badge:
    """The verdict in its colour, or ``otherwise`` (the analysis status) in grey without one."""
    text = otherwise if verdict is None else verdict_text(verdict)
    return ui.badge(text, color=verdict_colour(verdict)).classes("text-sm").mark("verdict-badge")
