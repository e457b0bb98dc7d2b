"""ONNX deployment bundle: export a model file to ONNX, and load the bundle back as a ``Model``.

``export_onnx(model, out, input_shape)`` writes three files beside each other::

    model.onnx          the encoder, and the classifier head with its softmax when the head reads
                        the embeddings: input ``x`` (B, *input_shape) float32 -> outputs
                        ``embedding`` (B, D) float32 [, ``proba`` (B, C) float32]; opset 17,
                        dynamic batch axis
    model.medssl.json   the source file's meta (domain, preprocessing, recipes, classes, scorer
                        name and kwargs), its model_id, the ONNX outputs and the input shape
    model.medssl.npz    the anomaly scorer's fitted statistics (``scorer/<key>``), the kNN
                        memory (``knn/...``) and the head weights (``head/...``)

What runs where with ``medssl score --runtime onnx``: the encoder (and an embedding head) in
onnxruntime; the anomaly scorer (every registered scorer: its statistics are arrays) and heads that
read recipe features or a kNN memory run in numpy/torch on the embeddings, as on the torch path.
A scorer built with a ``reconstruct`` callable cannot be exported (a function is not statistics).

``load_onnx_model(path)`` is reached through ``medssl.models.load_model`` (the one loader), which
hands ``.onnx`` paths here.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medssl.atomic import atomic_write
from medssl.checkpoints import file_sha256
from medssl.errors import CheckpointError, ConfigError

OPSET = 17
CHECK_ATOL = 1e-4  # exported graph vs torch on the check batches (embeddings and probabilities)
CHECK_BATCHES = (1, 3)  # a batch size other than the traced one catches sizes baked into the graph


def sidecar_paths(onnx_path: str | Path) -> tuple[Path, Path]:
    """``(model.medssl.json, model.medssl.npz)`` beside ``model.onnx``."""
    p = Path(onnx_path)
    return p.with_suffix(".medssl.json"), p.with_suffix(".medssl.npz")


class _Exported(nn.Module):
    """``x (B, *input_shape)`` -> ``embedding (B, D)`` [, ``proba (B, C)`` = softmax(head(embedding))]."""

    def __init__(self, encoder: nn.Module, head: nn.Module | None) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> Any:
        emb = self.encoder(x).float()
        if self.head is None:
            return emb
        return emb, torch.softmax(self.head(emb), dim=1)


class OnnxEncoder(nn.Module):
    """An onnxruntime session (CPU) with the encoder's face: ``num_features`` and
    ``forward(x (B, *input_shape)) -> (B, D)`` float32; ``run(x)`` also gives ``proba (B, C)`` when
    the graph has the head (else ``None``)."""

    def __init__(self, path: Path, num_features: int, outputs: list[str]) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.num_features, self.outputs = int(num_features), list(outputs)

    @property
    def has_proba(self) -> bool:
        return "proba" in self.outputs

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray | None]:
        """``(embedding (B, D) float32 tensor, proba (B, C) float64 or None)``."""
        got = self.session.run(self.outputs, {"x": np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)})
        proba = got[1].astype(np.float64) if self.has_proba else None
        return torch.from_numpy(got[0]), proba

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[0]


def _check(exported: nn.Module, data: bytes, input_shape: tuple[int, ...], outputs: list[str]) -> str | None:
    """Why the graph ``data`` does not reproduce ``exported`` within ``CHECK_ATOL`` (``None`` if it does)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:  # an operator onnxruntime cannot run
        return f"onnxruntime cannot load the graph ({str(exc).splitlines()[0][:200]})"
    gen = torch.Generator().manual_seed(0)
    for b in CHECK_BATCHES:
        x = torch.rand(b, *input_shape, generator=gen)
        with torch.inference_mode():
            want = exported(x)
        want = [want] if isinstance(want, torch.Tensor) else list(want)
        try:
            got = session.run(outputs, {"x": x.numpy()})
        except Exception as exc:
            return f"the graph fails at batch size {b} ({str(exc).splitlines()[0][:200]})"
        for name, w, g in zip(outputs, want, got):
            err = float(np.abs(w.numpy() - g).max()) if g.shape == tuple(w.shape) else float("inf")
            if not err <= CHECK_ATOL:
                return f"its {name} differ from torch by {err:.3g} at batch size {b}"
    return None


def export_onnx(model: Any, out: str | Path, input_shape: tuple[int, ...]) -> tuple[Path, Path, Path]:
    """Write ``out`` (.onnx) and its two sidecar files for the loaded ``model`` (``medssl.models.Model``);
    ``input_shape``: one item without the batch dimension. Returns the three paths.

    Raises ``ConfigError`` naming the encoder when it cannot be exported (the graph fails or differs
    from torch beyond 1e-4 at another batch size) or when the scorer is not exportable.
    """
    import onnx

    out = Path(out)
    if out.suffix != ".onnx":
        raise ConfigError(f"--out {out} must end in .onnx")
    enc_name = str(model.meta["encoder"]["name"])
    if "reconstruct" in (model.scorer_kwargs or {}):
        raise ConfigError(f"{model.path}: its {model.scorer_name!r} scorer uses a learned reconstruction "
                          "function, which has no statistics to export; score it with the torch runtime")
    embedding_head = model.head is not None and model.knn is None and model.few_label_recipe is None
    exported = _Exported(model.encoder.original, model.head if embedding_head else None).cpu().eval()
    outputs = ["embedding", "proba"] if embedding_head else ["embedding"]
    x = torch.rand(2, *input_shape, generator=torch.Generator().manual_seed(1))
    buf = _export_bytes(exported, x, outputs)
    why = buf if isinstance(buf, str) else _check(exported, buf, tuple(input_shape), outputs)
    if why is not None:
        raise ConfigError(f"encoder {enc_name!r} cannot be exported to ONNX: {why}; score this model with "
                          "the torch runtime (the default)")
    onnx.checker.check_model(onnx.load_from_string(buf))
    meta_path, npz_path = sidecar_paths(out)
    arrays = {f"scorer/{k}": v for k, v in (model.scorer_state() or {}).items()}
    if model.head is not None:
        arrays.update({f"head/{k}": v for k, v in model.head.state_dict().items()})
    if model.knn is not None:
        arrays.update({"knn/embeddings": model.knn.embeddings, "knn/labels": model.knn.labels})
    side = {
        "format": "medssl-onnx/1", "source_model_id": model.model_id, "kind": model.kind,
        "meta": model.meta, "input_shape": list(input_shape), "outputs": outputs,
        "num_features": int(model.encoder.num_features), "opset": OPSET,
        "scorer": None if model.scorer_name is None else {"name": model.scorer_name, "kwargs": model.scorer_kwargs},
        "knn_k": None if model.knn is None else int(model.knn.k),
    }
    np_arrays = {k: torch.as_tensor(v).detach().cpu().numpy() for k, v in arrays.items()}
    atomic_write(npz_path, lambda tmp: _save_npz(tmp, np_arrays))
    atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(side, indent=1, default=str)))
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(buf))  # last: the .onnx exists only once all three do
    return out, meta_path, npz_path


def _save_npz(tmp: str | Path, arrays: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _export_bytes(exported: nn.Module, x: torch.Tensor, outputs: list[str]) -> bytes | str:
    """The ONNX graph of ``exported`` traced on ``x`` (dynamic batch axis), or why it failed."""
    import io

    buf = io.BytesIO()
    axes = {name: {0: "batch"} for name in ["x", *outputs]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(exported, (x,), buf, opset_version=OPSET, input_names=["x"], output_names=outputs,
                              dynamic_axes=axes, dynamo=False)
    except Exception as exc:
        return f"torch.onnx.export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    return buf.getvalue()


def read_onnx_bundle(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], OnnxEncoder]:
    """``(sidecar JSON, arrays as tensors, OnnxEncoder)`` of an exported ``model.onnx``."""
    meta_path, npz_path = sidecar_paths(path)
    for p in (path, meta_path, npz_path):
        if not p.is_file():
            raise CheckpointError(f"{p} is missing: an ONNX model needs its {meta_path.name} and {npz_path.name} "
                                  "beside it; re-export with `medssl export onnx`")
    side = json.loads(meta_path.read_text())
    if side.get("format") != "medssl-onnx/1":
        raise CheckpointError(f"{meta_path} is not a medssl ONNX sidecar; re-export with `medssl export onnx`")
    with np.load(npz_path, allow_pickle=False) as z:
        arrays = {k: torch.from_numpy(np.array(z[k])) for k in z.files}
    return side, arrays, OnnxEncoder(path, side["num_features"], side["outputs"])


def onnx_model_id(path: Path) -> str:
    """Content hash of the .onnx file and its two sidecars (``model_id`` of its scores)."""
    import hashlib

    return hashlib.sha256("".join(file_sha256(p) for p in (path, *sidecar_paths(path))).encode()).hexdigest()
