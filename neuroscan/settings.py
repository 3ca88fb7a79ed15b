"""Settings as a frozen dataclass: defaults from a TOML file in ``config/``, each overridable by an
environment variable of the same name (``<PREFIX><KEY>``), as deployments and tests change single
values without editing the file. The dashboard and the PACS worker both read theirs this way.
"""

import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def load_section(kind: type[T], default_config: Path, section: str, env_prefix: str,
                 environ: Mapping[str, str] | None = None) -> T:
    """``kind`` from ``[section]`` of the TOML file (``<PREFIX>CONFIG`` may name another) and the environment."""
    environ = dict(os.environ if environ is None else environ)
    raw: dict = tomllib.loads(Path(environ.get(f"{env_prefix}CONFIG", default_config)).read_text())[section]
    values = {}
    for spec in fields(kind):
        text = environ.get(env_prefix + spec.name.upper())
        values[spec.name] = convert(spec.type, raw[spec.name] if text is None else text)
    return kind(**values)


def convert(kind: type, value: object) -> object:
    """Environment values are strings; coerce them (and TOML values) to the field's type; relative
    paths are relative to the repository root."""
    if kind is Path:
        path = Path(str(value))
        return path if path.is_absolute() else REPO_ROOT / path
    if kind is bool and isinstance(value, str):  # bool("false") would be True
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return kind(value)
