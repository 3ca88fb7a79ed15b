"""One module per ``@ui.page``; importing this package registers them all."""

from dashboard.pages import (
    audit,
    case,
    history,
    login,
    new_case,
    operator,
    studies,
    study,
)

__all__ = ["audit", "case", "history", "login", "new_case", "operator", "studies", "study"]
