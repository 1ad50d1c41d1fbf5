"""config.example.toml documents every key, and loads as it stands."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _flatten(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        keys |= _flatten(value, f"{prefix}{name}.") if isinstance(value, dict) else {prefix + name}
    return keys


def test_example_documents_every_setting() -> None:
    documented = _flatten(tomllib.loads(EXAMPLE.read_text()))
    assert documented == _keys(Settings)


def test_example_loads_and_equals_the_defaults() -> None:
    assert load_settings(config_path=EXAMPLE, environ={}) == Settings()
