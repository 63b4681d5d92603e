"""Published vocabularies (the UTS release's label_K.json): compare this corpus's vocabulary with one, or seed one
as the preferred canonical targets of merge suggestions.

Place in the flow: decide / vocabulary. ``compare`` reads the current vocabulary (replayed decisions, TF-IDF
ranking) and a published list; ``seed`` stores the list (curation/store/published.py) so that
``suggest_merges`` names groups after release labels and proposes mapping raw tags onto labels no clip carries
yet (surface variants and inflections), those mappings first.

A published list is the release's id-to-label JSON, ``{"0": "electronic", "1": "studio", ...}`` (ids give the
rank), or a plain JSON list of labels. Tags are matched on their surface key (case, '-', '_', spaces ignored), so
``high_fidelity`` here matches ``high-fidelity`` there; each side's first spelling of a key stands for it.

Example::

    labels = load_published("label_800.json")
    report = compare(con, labels)          # overlap at each K, Spearman / Kendall, tags in one list only
    seed(con, labels, source="label_800.json", by="ana")
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from curation import store
from curation.admin import permissions
from curation.errors import UtsError
from curation.store import published as store_published
from curation.vocabulary.decisions import DecisionError, list_decisions, replay
from curation.vocabulary.lexical import surface_key
from curation.vocabulary.ranking import K_MARKS, TagMatrix, compute_vocabulary, load_tag_matrix


class PublishedVocabularyError(UtsError, ValueError):
    """A published vocabulary file that is not an id-to-label JSON object or a JSON list of labels."""


def looks_like_published_vocabulary(path: str | Path) -> bool:
    """True for a file that parses as a published label list (what ``ingest`` should redirect to ``vocab``)."""
    try:
        load_published(path)
    except (PublishedVocabularyError, OSError):
        return False
    return True


def load_published(path: str | Path) -> list[str]:
    """The labels in release order. Raises PublishedVocabularyError naming the file and the offending entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PublishedVocabularyError(f"{path}:{exc.lineno}: expected JSON (an id-to-label object such as "
                                       f"{{\"0\": \"electronic\"}} or a list of labels), found: {exc.msg}") from None
    except UnicodeDecodeError:
        raise PublishedVocabularyError(f"{path}: expected UTF-8 JSON text") from None
    if isinstance(data, dict):
        entries = []
        for key, label in data.items():
            if not (isinstance(key, str) and key.strip().lstrip("-").isdigit()):
                raise PublishedVocabularyError(f"{path}: key {key!r}: expected an integer id (\"0\", \"1\", ...)")
            entries.append((int(key), key, label))
        entries.sort()
        items = [(f"id {key!r}", label) for _, key, label in entries]
    elif isinstance(data, list):
        items = [(f"item {index}", label) for index, label in enumerate(data)]
    else:
        raise PublishedVocabularyError(f"{path}: expected an id-to-label object or a list of labels, found "
                                       f"{type(data).__name__}")
    labels = []
    for where, label in items:
        if not isinstance(label, str) or not label.strip():
            raise PublishedVocabularyError(f"{path}: {where}: expected a non-empty label text, found {label!r}")
        labels.append(label.strip())
    if not labels:
        raise PublishedVocabularyError(f"{path}: expected at least one label, found none")
    return labels


@dataclass(frozen=True)
class Comparison:
    published: int  # labels in the published list (distinct surface keys; overlap's K counts them as listed)
    ours: int  # canonical tags ranked here
    overlap: list[dict] = field(default_factory=list)  # per K: {k, shared, share}
    shared: int = 0  # tags in both lists (any rank)
    spearman: float | None = None  # rank correlation over the shared tags (None with fewer than 3)
    kendall: float | None = None
    only_published: list[dict] = field(default_factory=list)  # {label, position, df_here}: df of raw tags so spelled
    only_ours: list[dict] = field(default_factory=list)  # {tag, rank, df}: in our top-N (N = published size) only
    rank_by: str = "tfidf"

    def as_dict(self) -> dict:
        return {"published": self.published, "ours": self.ours, "shared": self.shared, "overlap": self.overlap,
                "spearman": self.spearman, "kendall": self.kendall, "only_published": self.only_published,
                "only_ours": self.only_ours, "rank_by": self.rank_by}


def compare(con: duckdb.DuckDBPyConnection, labels: list[str], *, matrix: TagMatrix | None = None,
            rank_by: str = "tfidf", ks: tuple[int, ...] | None = None) -> Comparison:
    """This corpus's current vocabulary against a published list: top-K overlap at each K, rank correlation over
    the shared tags, and what each list has that the other lacks (with document frequencies here)."""
    from scipy import stats

    matrix = matrix if matrix is not None else load_tag_matrix(con)
    view = compute_vocabulary(matrix, replay(list_decisions(con)), rank_by=rank_by)
    published_rank: dict[str, int] = {}
    for position, label in enumerate(labels, start=1):
        published_rank.setdefault(surface_key(label), position)
    published_keys = list(published_rank)
    our_tags = view.ranking["tag"].tolist()
    our_df = view.ranking["df"].tolist()
    our_rank: dict[str, int] = {}
    for rank, tag in enumerate(our_tags, start=1):
        our_rank.setdefault(surface_key(tag), rank)
    our_keys = list(our_rank)
    # K counts the release's labels as published (its surface duplicates included), as label_K.json names it.
    marks = sorted({k for k in (ks or K_MARKS) if 0 < k <= len(labels)} | {len(labels)})
    overlap = []
    for k in marks:
        shared = len({surface_key(label) for label in labels[:k]} & set(our_keys[:k]))
        overlap.append({"k": k, "shared": shared, "share": round(shared / k, 4)})
    both = [key for key in published_keys if key in our_rank]
    spearman = kendall = None
    if len(both) >= 3:
        x = [published_rank[key] for key in both]
        y = [our_rank[key] for key in both]
        spearman = round(float(stats.spearmanr(x, y).statistic), 4)
        kendall = round(float(stats.kendalltau(x, y).statistic), 4)
    raw_df = _raw_df_by_key(matrix)
    first_label = {}
    for label in labels:
        first_label.setdefault(surface_key(label), label)
    only_published = [{"label": first_label[key], "position": published_rank[key], "df_here": raw_df.get(key, 0)}
                      for key in published_keys if key not in our_rank]
    top = set(published_keys)
    only_ours = [{"tag": our_tags[rank - 1], "rank": rank, "df": int(our_df[rank - 1])}
                 for key, rank in our_rank.items() if rank <= len(published_keys) and key not in top]
    only_ours.sort(key=lambda row: row["rank"])
    return Comparison(published=len(published_keys), ours=len(our_keys), overlap=overlap, shared=len(both),
                      spearman=spearman, kendall=kendall, only_published=only_published, only_ours=only_ours,
                      rank_by=rank_by)


def _raw_df_by_key(matrix: TagMatrix) -> dict[str, int]:
    """Clips carrying a raw tag of each surface key (before any decision): a published label missing from the
    vocabulary may still be here under a merged-away or pruned spelling."""
    ids = matrix.slots[matrix.slots >= 0]
    counts = np.bincount(ids, minlength=len(matrix.tag_texts))
    out: dict[str, int] = {}
    for tag_id in np.flatnonzero(counts).tolist():
        key = surface_key(matrix.tag_texts[tag_id])
        out[key] = out.get(key, 0) + int(counts[tag_id])
    return out


def seed(con: duckdb.DuckDBPyConnection, labels: list[str], *, source: str, by: str) -> int:
    """Make ``labels`` the seeded published vocabulary (replacing any earlier one; an empty list clears it), in
    one transaction. Needs the "decide" ability. Returns the number of labels stored."""
    by = permissions.authorize("decide", by)
    if not isinstance(by, str) or not by.strip():
        raise DecisionError("seeding a published vocabulary names who did it: expected a non-empty --by")
    unique = list(dict.fromkeys(label.strip() for label in labels))
    with store.transaction(con):
        store_published.replace_seeded(con, unique, source, by.strip())
    return len(unique)


def seeded(con: duckdb.DuckDBPyConnection) -> dict | None:
    """{source, seeded_by, seeded_at, labels} of the seeded published vocabulary, or None."""
    return store_published.seeded_source(con)
