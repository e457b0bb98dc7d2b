"""The one model-file format (``model_file``), its one loader (``load_model`` -> ``Model``) and
batched embedding (``embed``)."""

from medssl.models.embed import embed, resolve_device
from medssl.models.knn_memory import KnnMemory, centroid_head
from medssl.models.model import BatchOutput, Model, load_model, restore_scorer
from medssl.models.model_file import ModelMeta, build_encoder, model_checkpoint

__all__ = ["BatchOutput", "KnnMemory", "Model", "ModelMeta", "build_encoder", "centroid_head", "embed",
           "load_model", "model_checkpoint", "resolve_device", "restore_scorer"]
