"""Self-describing checkpoints, loaded with ``torch.load(weights_only=True)``.

A file holds plain containers only (dicts, lists, str, numbers, tensors)::

    {
      "medssl_format": 1,
      "kind": "encoder" | "model",      # pretrained encoder, or encoder + head (fine-tuned)
      "meta": {...},                    # JSON-able: encoder name/kwargs, domain, preprocessing,
                                        # schema, config, method, metrics, created_at, version
      "states": {"encoder": state_dict, "head": state_dict, ...},
      "tensors": {"name": tensor, ...}, # e.g. normalisation stats, scorer reference statistics
      "digest": "sha256 hex",           # over kind + meta + every tensor: detects corruption
      "digest_version": 2,              # 2: kind is hashed too (files without it: meta + tensors)
      "signature": "hmac-sha256 hex",   # only when a site key is set (see below)
    }

The digest catches corruption (a truncated or bit-flipped file, a file saved by something
else) but not tampering: whoever edits a file can recompute a plain SHA-256. Tampering is caught
by a **site key**: with ``MEDSSL_MODEL_KEY`` (the key itself) or ``MEDSSL_MODEL_KEY_FILE`` (a file
holding it) set, every file is saved with an HMAC-SHA256 signature over the same content, and
every load requires a valid one: an unsigned file, or one signed with another key, is refused.
Keep the key where the scoring jobs and the app can read it and nobody else can.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import medssl
from medssl.atomic import atomic_write
from medssl.errors import CheckpointError

FORMAT_VERSION = 1
DIGEST_VERSION = 2
KINDS = ("encoder", "model")
KEY_ENV = "MEDSSL_MODEL_KEY"
KEY_FILE_ENV = "MEDSSL_MODEL_KEY_FILE"


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


def _content_hash(
    h: Any, kind: str | None, meta: dict[str, Any], states: dict[str, dict[str, torch.Tensor]], tensors: dict[str, torch.Tensor]
) -> str:
    """Feed kind (unless ``None``: digest version 1), meta and every tensor into ``h``; hex result."""
    if kind is not None:
        h.update(f"kind/{kind}/".encode())
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


def _digest(kind: str | None, meta: dict[str, Any], states: dict[str, dict[str, torch.Tensor]], tensors: dict[str, torch.Tensor]) -> str:
    return _content_hash(hashlib.sha256(), kind, meta, states, tensors)


def site_key() -> bytes | None:
    """The model-signing key from ``$MEDSSL_MODEL_KEY`` or the file named by ``$MEDSSL_MODEL_KEY_FILE``.

    ``None`` when neither is set. An unreadable or empty key file raises ``CheckpointError``.
    """
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode("utf-8")
    key_file = os.environ.get(KEY_FILE_ENV)
    if not key_file:
        return None
    try:
        key = Path(key_file).read_bytes().strip()
    except OSError as exc:
        raise CheckpointError(f"${KEY_FILE_ENV}={key_file} cannot be read ({exc.strerror}); fix the path or unset it") from None
    if not key:
        raise CheckpointError(f"${KEY_FILE_ENV}={key_file} is empty; put the site key in it or unset it")
    return key


def _signature(key: bytes, kind: str, meta: dict[str, Any], states: dict[str, dict[str, torch.Tensor]], tensors: dict[str, torch.Tensor]) -> str:
    return _content_hash(hmac.new(key, digestmod=hashlib.sha256), kind, meta, states, tensors)


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
        "digest": _digest(ckpt.kind, meta, states, tensors),
        "digest_version": DIGEST_VERSION,
    }
    key = site_key()
    if key is not None:
        payload["signature"] = _signature(key, ckpt.kind, meta, states, tensors)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, expect_kind: str | None = None) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True``; refuse foreign, corrupt or tampered files.

    With a site key set (:func:`site_key`) the file must carry a valid signature. Raises
    ``CheckpointError`` with a message that says what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; pass the checkpoint.pt or model.pt a run wrote")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises struct.error, KeyError, UnicodeDecodeError, ... on junk
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
    if not (isinstance(kind, str) and isinstance(meta, dict) and isinstance(states, dict)
            and all(isinstance(g, dict) for g in states.values()) and isinstance(tensors, dict)):
        raise CheckpointError(f"{path} has a malformed layout (kind, meta, states or tensors of the wrong type); the file is damaged")
    version = payload.get("digest_version", 1)
    if _digest(kind if version >= 2 else None, meta, states, tensors) != digest:
        raise CheckpointError(
            f"{path} failed its integrity check: its contents do not match the digest written "
            "with it (the file was modified after saving). Re-create it with medssl."
        )
    key = site_key()
    if key is not None:
        signature = payload.get("signature")
        if not isinstance(signature, str):
            raise CheckpointError(
                f"{path} is not signed, and ${KEY_ENV} / ${KEY_FILE_ENV} is set: only models saved with "
                "the site key are accepted. Re-create it with medssl while the key is set."
            )
        if not hmac.compare_digest(signature, _signature(key, kind, meta, states, tensors)):
            raise CheckpointError(
                f"{path} failed its signature check: it was modified after saving or signed with another "
                "site key. Re-create it with medssl while the right key is set."
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
