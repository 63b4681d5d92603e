"""Tag embeddings and the neighbour searches shared by merge suggestions and the tag map: exact where they say
so (equal to a brute-force search, whichever backend), screened beyond the exact limit with exact distances,
and each distinct token sequence embedded once."""
from __future__ import annotations

import numpy as np
import pytest

from curation import store
from curation.vocabulary import embeddings


def _unit_vectors(n: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors[5] = vectors[2]  # an identical pair: each row must still come first in its own list
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_nearest_neighbours_equal_a_brute_force_search_in_blocks(monkeypatch):
    vectors = _unit_vectors(700, 16, seed=1)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, 2.0)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :15]
    monkeypatch.setattr(embeddings, "BLOCK_CELLS", 64 * 700)  # many blocks, the last one short
    for backend in (embeddings._torch, lambda: None):  # torch when installed, and numpy alone
        monkeypatch.setattr(embeddings, "_torch", backend)
        indices, distances = embeddings.nearest_neighbours(vectors, 15)
        assert (indices[:, 0] == np.arange(700)).all() and (distances[:, 0] == 0).all()
        true_distances = 1 - np.take_along_axis(sims, expected, axis=1)[:, 1:]
        # As near as the true neighbours (ties in float32 may swap which of two equals comes first).
        assert np.allclose(distances[:, 1:], np.maximum(true_distances, 0), atol=1e-5)
        assert (indices == expected).mean() > 0.99
        expected_distance = 1 - np.take_along_axis(vectors @ vectors.T, indices, axis=1)
        assert np.allclose(distances[:, 1:], np.maximum(expected_distance[:, 1:], 0), atol=1e-5)
        assert (np.diff(distances, axis=1) >= -1e-6).all()


def test_screened_neighbours_beyond_the_exact_limit_keep_exact_distances_and_most_true_neighbours(monkeypatch):
    """Above EXACT_NEIGHBOURS_MAX rows candidates come from a reduced space; what is returned is still ranked by
    the exact cosine, the row first, and nearly all true neighbours are found on embedding-like vectors (a
    decaying spectrum)."""
    rng = np.random.default_rng(3)
    scales = 1.0 / np.arange(1, 129) ** 0.9
    vectors = (rng.normal(size=(3000, 128)) * scales).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact_i, _ = embeddings.nearest_neighbours(vectors, 15, exact=True)
    monkeypatch.setattr(embeddings, "EXACT_NEIGHBOURS_MAX", 1000)  # 3,000 rows: screened by default now
    for backend in (embeddings._torch, lambda: None):
        monkeypatch.setattr(embeddings, "_torch", backend)
        indices, distances = embeddings.nearest_neighbours(vectors, 15)
        assert (indices[:, 0] == np.arange(3000)).all()
        true = 1 - np.take_along_axis(vectors @ vectors.T, indices, axis=1)
        assert np.allclose(distances[:, 1:], np.maximum(true[:, 1:], 0), atol=1e-5)
        assert (np.diff(distances, axis=1) >= -1e-6).all()
        recall = np.mean([len(set(a[1:]) & set(b[1:])) / 14 for a, b in zip(indices, exact_i)])
        assert recall > 0.9, recall


@pytest.mark.parametrize("per_tag", [1, 3])
def test_embedding_neighbours_above_a_threshold_equal_a_brute_force_search(monkeypatch, per_tag):
    """The upper-triangle block search keeps, per tag, its per_tag best partners above the threshold, whichever
    side of the diagonal they lie on, exactly as a full n x n search would."""
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(40, 12))
    vectors = (centres[rng.integers(0, 40, 600)] + 0.35 * rng.normal(size=(600, 12))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = vectors @ vectors.T
    expected = set()
    for row in range(600):
        partners = [c for c in np.argsort(-sims[row], kind="stable") if c != row and sims[row, c] >= 0.8][:per_tag]
        expected.update((min(row, c), max(row, c)) for c in partners)
    assert len(expected) > 300  # clusters: many tags have more partners than per_tag
    monkeypatch.setattr(embeddings, "BLOCK_CELLS", 50 * 600)
    torch_backend = embeddings._torch
    # torch screening in bfloat16 then scoring in float32 (taken on CPUs with bfloat16 in hardware), torch in
    # float32, numpy alone: all exact.
    for backend, bf16 in ((torch_backend, True), (torch_backend, False), (lambda: None, False)):
        monkeypatch.setattr(embeddings, "_torch", backend)
        monkeypatch.setattr(embeddings, "_cpu_has_bf16", lambda bf16=bf16: bf16)
        a, b = embeddings.neighbours_above(vectors, 0.8, per_tag)
        assert (a < b).all()
        found = set(zip(a.tolist(), b.tolist()))
        assert len(found ^ expected) <= 2, sorted(found ^ expected)[:5]  # float ties at the per_tag cut aside



class _FakeTokenizer:
    """Lower-cases and splits on spaces, as an uncased model's tokenizer would for these texts."""

    def __call__(self, texts, **_):
        return {"input_ids": [[101, *(hash(w) % 30_000 for w in text.lower().split()), 102] for text in texts]}


class _FakeModel:
    def __init__(self):
        self.tokenizer = _FakeTokenizer()
        self.encoded: list[str] = []

    def encode(self, texts, **_):
        self.encoded.extend(texts)
        rows = np.array([[len(t), sum(map(ord, t.lower())) % 97 + 1.0, 1.0] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_texts_read_as_the_same_tokens_are_embedded_once_and_get_one_vector(tmp_path, monkeypatch):
    fake = _FakeModel()
    monkeypatch.setattr(embeddings, "_load", lambda folder: fake)
    monkeypatch.setattr(embeddings, "resolve_model", lambda model_path=None: ("fake-model", str(tmp_path)))
    con = store.connect(tmp_path / "e.duckdb")
    tags = ["Speech", "speech", "dog bark", "Dog  Bark", "rain"]
    vectors = embeddings.embed_tags(con, tags)
    assert sorted(fake.encoded) == ["Speech", "dog bark", "rain"]  # one text per distinct token sequence
    assert np.array_equal(vectors[0], vectors[1]) and np.array_equal(vectors[2], vectors[3])
    assert not np.array_equal(vectors[0], vectors[4])
    # Every text is cached under its own spelling: asking again embeds nothing.
    again = embeddings.embed_tags(con, ["speech", "Dog  Bark"])
    assert len(fake.encoded) == 3 and np.array_equal(again, vectors[[1, 3]])
    con.close()


def test_worker_threads_embed_each_text_like_the_model_and_give_torch_its_threads_back():
    """The batches shared out to one single-threaded worker per core come back in the texts' order, each vector
    the model's own for its text (bfloat16 where the CPU has it: cosine within 1e-3), and torch's thread count
    is what it was."""
    torch = pytest.importorskip("torch")
    model = embeddings._load(embeddings.resolve_model()[1])
    texts = ["rain", "dog barking in the distance", "speech", "heavy rain on a tin roof", "engine idling",
             "a man speaks while birds chirp and a car passes by", "wind", "church bells", "crowd cheering",
             "glass breaking", "footsteps on gravel", "thunder", "music"] * 3
    representative, distinct, lengths = embeddings._token_groups(model, texts)
    assert len(distinct) == 13 and (representative[:13] == np.arange(13)).all()
    threads = torch.get_num_threads()
    vectors = embeddings._encode(model, distinct, lengths, batch_size=2)  # 7 batches over the workers
    assert torch.get_num_threads() == threads
    expected = np.asarray(model.encode(distinct, convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)  # in float32 (a bfloat16 model's own is rounded)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    agreement = vectors @ expected.T
    assert (np.diag(agreement) > 0.999).all()
    assert (agreement.argmax(axis=1) == np.arange(13)).all()
