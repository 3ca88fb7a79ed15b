"""Missing test dependencies: a skip on a developer's machine, a failure in CI.

Why: the Debian packages ``make test-deps`` installs (Prometheus, nginx, Chromium, compose, shellcheck)
and the data set are what whole groups of tests run; if a skip were all they cost, CI could go green
with that coverage silently gone. Under ``CI=true`` (GitHub Actions sets it, ``.ci/run`` too) every
missing dependency fails its tests instead.
"""

import os
from typing import NoReturn

import pytest

STRICT = os.environ.get("CI", "").strip().lower() == "true"


def missing(reason: str) -> NoReturn:
    """Skip (or, under ``CI=true``, fail) the running test because a dependency is not installed."""
    if STRICT:
        pytest.fail(f"{reason} [CI=true: a missing test dependency fails the run]", pytrace=False)
    pytest.skip(reason)


def needs(available: bool, reason: str) -> pytest.MarkDecorator:
    """A test or module mark (``pytestmark = needs(...)``): the conftest calls :func:`missing` at setup,
    before any fixture starts a server, when ``available`` is false."""
    return pytest.mark.needs(available=available, reason=reason)
