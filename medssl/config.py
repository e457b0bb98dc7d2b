"""Typed configs: pydantic models next to the code that uses them; YAML only overrides.

Unknown keys are errors (``extra="forbid"``) and every run saves its resolved config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medssl.errors import ConfigError

C = TypeVar("C", bound="StrictConfig")

SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]  # a random seed field of any config


class StrictConfig(BaseModel):
    """Base for every config: unknown keys are rejected, values are validated on assignment, and
    float settings must be finite (``lr: .inf`` is an error, not a run of NaN losses)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def load_config(cls: type[C], path: str | Path | None = None, **overrides: Any) -> C:
    """Defaults of ``cls``, overridden by the YAML file at ``path``, then by ``overrides``.

    Overrides whose value is ``None`` are ignored (an unset CLI flag). Nested keys may be
    given with dots (``"optim.lr": 0.1``).
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists() or p.is_dir():
            raise ConfigError(f"config file {p} does not exist; pass a path to a YAML file")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"config file {p} is not a text file (not UTF-8); pass a YAML file such as configs/*.yaml") from None
        except OSError as exc:
            raise ConfigError(f"config file {p} cannot be read ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            first = str(exc).strip().splitlines()
            raise ConfigError(f"config file {p} is not valid YAML: {' '.join(x.strip() for x in first[:3])}") from None
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
