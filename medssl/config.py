"""Typed configs: pydantic models next to the code that uses them; YAML only overrides.

Unknown keys are errors (``extra="forbid"``) and every run saves its resolved config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from medssl.errors import ConfigError

C = TypeVar("C", bound="StrictConfig")


class StrictConfig(BaseModel):
    """Base for every config: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def load_config(cls: type[C], path: str | Path | None = None, **overrides: Any) -> C:
    """Defaults of ``cls``, overridden by the YAML file at ``path``, then by ``overrides``.

    Overrides whose value is ``None`` are ignored (an unset CLI flag). Nested keys may be
    given with dots (``"optim.lr": 0.1``).
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; pass a path to a YAML file")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of keys to values")
        data.update(loaded)
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid {cls.__name__}{where}: {problems}") from None


def save_config(config: StrictConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (the record of what a run really used)."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
