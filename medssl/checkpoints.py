"""Self-describing checkpoints, loaded with ``torch.load(weights_only=True)``.

A file holds plain containers only (dicts, lists, str, numbers, tensors)::

    {
      "medssl_format": 1,
      "kind": "encoder" | "model",      # pretrained encoder, or encoder + head (fine-tuned)
      "meta": {...},                    # JSON-able: encoder name/kwargs, domain, preprocessing,
                                        # schema, config, method, metrics, created_at, version
      "states": {"encoder": state_dict, "head": state_dict, ...},
      "tensors": {"name": tensor, ...}, # e.g. normalisation stats, scorer reference statistics
      "digest": "sha256 hex",           # over meta + every tensor: detects tampering
    }
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import medssl
from medssl.atomic import atomic_write
from medssl.errors import CheckpointError

FORMAT_VERSION = 1
KINDS = ("encoder", "model")


@dataclass
class Checkpoint:
    """In-memory form of a checkpoint file.

    ``meta["encoder"]`` must be ``{"name": str, "kwargs": dict}`` so the encoder can be rebuilt
    from the registry without any other file.
    """

    kind: str
    meta: dict[str, Any]
    states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def _tensor_bytes(t: torch.Tensor) -> np.ndarray | bytes:
    """The raw bytes of ``t`` as a uint8 array (hashlib reads it in place, no copy)."""
    t = t.detach().cpu().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""


def _digest(meta: dict[str, Any], states: dict[str, dict[str, torch.Tensor]], tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for group_name in sorted(states):
        for key in sorted(states[group_name]):
            t = states[group_name][key]
            h.update(f"{group_name}/{key}/{t.dtype}/{tuple(t.shape)}".encode())
            h.update(_tensor_bytes(t))
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"tensors/{key}/{t.dtype}/{tuple(t.shape)}".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically (temp file + rename) and return the path."""
    if ckpt.kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {ckpt.kind!r}")
    enc = ckpt.meta.get("encoder")
    if not (isinstance(enc, dict) and "name" in enc and "kwargs" in enc):
        raise ValueError('checkpoint meta needs "encoder": {"name": ..., "kwargs": {...}}')
    meta = json.loads(json.dumps(ckpt.meta, default=str))  # force JSON-able plain types
    meta.setdefault("created_at", _dt.datetime.now(_dt.timezone.utc).isoformat())
    meta.setdefault("medssl_version", medssl.__version__)
    states = {g: {k: v.detach().cpu() for k, v in sd.items()} for g, sd in ckpt.states.items()}
    tensors = {k: v.detach().cpu() for k, v in ckpt.tensors.items()}
    payload = {
        "medssl_format": FORMAT_VERSION,
        "kind": ckpt.kind,
        "meta": meta,
        "states": states,
        "tensors": tensors,
        "digest": _digest(meta, states, tensors),
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, expect_kind: str | None = None) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True``; refuse foreign, corrupt or tampered files.

    Raises ``CheckpointError`` with a message that says what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; pass the checkpoint.pt or model.pt a run wrote")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(first) > 120:  # torch's weights_only message is a paragraph; keep one short line
            first = first[:117] + "..."
        raise CheckpointError(
            f"{path} is not a readable medssl checkpoint (it may be corrupt, truncated, or hold "
            f"code that weights_only=True refuses to load): {first}"
        ) from None
    if not isinstance(payload, dict) or payload.get("medssl_format") is None:
        raise CheckpointError(f"{path} is not a medssl checkpoint (no medssl_format marker)")
    if payload["medssl_format"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {payload['medssl_format']}, this medssl reads "
            f"{FORMAT_VERSION}; upgrade medssl"
        )
    try:
        kind, meta, states, tensors, digest = (
            payload["kind"], payload["meta"], payload["states"], payload["tensors"], payload["digest"]
        )
    except KeyError as exc:
        raise CheckpointError(f"{path} is missing the {exc.args[0]!r} entry; the file is damaged") from None
    if _digest(meta, states, tensors) != digest:
        raise CheckpointError(
            f"{path} failed its integrity check: its contents do not match the digest written "
            "with it (the file was modified after saving). Re-create it with medssl."
        )
    if expect_kind is not None and kind != expect_kind:
        raise CheckpointError(f"{path} is a {kind!r} checkpoint; this command needs a {expect_kind!r} one")
    return Checkpoint(kind=kind, meta=meta, states=states, tensors=tensors)


def file_sha256(path: str | Path, length: int = 16) -> str:
    """Content hash of a file (first ``length`` hex chars): the ``model_id`` of a model file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]
