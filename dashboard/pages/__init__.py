"""One module per ``@ui.page``; importing this package registers them all."""

from dashboard.pages import case, history, login, new_case, operator

__all__ = ["case", "history", "login", "new_case", "operator"]
