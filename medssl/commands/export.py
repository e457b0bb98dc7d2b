"""``medssl export onnx --model MODEL --out model.onnx``: deployment export; ``export sr`` (medssl.commands.export_sr)."""

from __future__ import annotations

import argparse

ONNX_DESCRIPTION = """\
Export a model file to ONNX for deployment (opset 17, dynamic batch axis):

  OUT (.onnx)           the encoder, and the classifier head's probabilities when the head reads the
                        embeddings: input x (B, *input_shape) -> embedding (B, D) [, proba (B, C)]
  OUT.medssl.json/.npz  beside it: the model's preprocessing, recipes, classes and the anomaly
                        scorer's fitted statistics (the scorer runs in numpy on the embeddings)

The export is checked: onnxruntime must reproduce torch's embeddings and probabilities within 1e-4
at two batch sizes, else it stops naming the encoder. Score with the bundle:
  medssl score --model OUT --runtime onnx --data DATA_DIR --out scores.parquet

The input shape (one case, no batch axis) comes from --input-shape, the model file, or the first
case of --data DATA_DIR.

Example:
  medssl export onnx --model runs/ft/model.pt --out deploy/model.onnx --data data/cxr
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand group with its ``onnx`` action."""
    p = subparsers.add_parser("export", help="export a model for deployment (onnx) or results as DICOM SR (sr)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    o = actions.add_parser("onnx", help="encoder + head to ONNX, scorer statistics beside it",
                           description=ONNX_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--model", required=True, metavar="MODEL", help="model.pt (medssl finetune) or checkpoint.pt")
    o.add_argument("--out", required=True, metavar="OUT", help="the .onnx file to write")
    o.add_argument("--data", default=None, metavar="DATA_DIR", help="a DATA_DIR of the model's domain: its first "
                   "case fixes the input shape")
    o.add_argument("--input-shape", default=None, metavar="D,D,...", help="shape of one case without the batch "
                   "axis, e.g. 1,28,28")
    o.set_defaults(func=run_onnx)
    from medssl.commands.export_sr import register as register_sr

    register_sr(actions)


def _input_shape(args: argparse.Namespace, model) -> tuple[int, ...]:  # noqa: ANN001
    from medssl.errors import ConfigError

    if args.input_shape:
        try:
            return tuple(int(d) for d in args.input_shape.split(","))
        except ValueError:
            raise ConfigError(f"--input-shape {args.input_shape!r}: give integers separated by commas, e.g. 1,28,28") from None
    if model.meta.get("input_shape"):
        return tuple(int(d) for d in model.meta["input_shape"])
    if args.data:
        from medssl.scoring.chunk import make_chunk_dataset
        from medssl.data import read_manifest

        rows = read_manifest(args.data)
        rows = rows.loc[rows["domain"].astype(str) == model.domain].head(1)
        if len(rows):
            return tuple(make_chunk_dataset(model, args.data, rows)[0].shape)
        raise ConfigError(f"--data {args.data} holds no {model.domain!r} case to take the input shape from")
    raise ConfigError(f"{args.model} does not record its input shape; pass --data DATA_DIR (its first case "
                      "fixes it) or --input-shape D,D,...")


def run_onnx(args: argparse.Namespace) -> int:
    """Export; print the three files written."""
    from pathlib import Path

    from medssl.errors import ConfigError
    from medssl.models import load_model
    from medssl.models.onnx_bundle import export_onnx

    if Path(args.out).resolve() == Path(args.model).resolve():
        raise ConfigError("--out must be a different file from --model")
    model = load_model(args.model, device="cpu")
    if model.path is not None and model.path.suffix == ".onnx":
        raise ConfigError(f"{args.model} is already an ONNX export; pass the model.pt it came from")
    paths = export_onnx(model, args.out, _input_shape(args, model))
    print(f"exported {args.model} -> {', '.join(str(p) for p in paths)}")
    return 0
