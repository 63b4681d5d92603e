"""Browse and the caption text index against plain-Python references on small seeded corpora."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import make_cut, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curation import store
from curation.explore import browse
from curation.explore.browse import BrowseError, BrowseFilters, browse_page, clip_detail, count_matching, view_clip_keys
from curation.ingest import text_index
from curation.ingest.ingest import ingest_path
from curation.store import browse as store_browse
from curation.store import ingest as store_ingest
from curation.vocabulary.decisions import Decision, list_decisions, record_decision, replay
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix

WORDS = ["dog", "bark", "barking", "piano", "music", "rain", "wind", "engine", "car", "bird", "song", "voice",
         "crowd", "café", "naïve"]
TAGS = ["dog", "dogs", "bark", "piano", "music", "rain", "wind", "engine", "car", "bird", "speech", "noise"]
SPECIAL_CAPTIONS = [
    "It is 100% certain: a dog barks.",
    "snake_case words and under_scores appear here",
    "He said \"quoted words\" with 'single quotes' too",
    "A caption holding '; DROP TABLE clips; -- as text",
    "Back\\slash and percent% and a x' OR '1'='1 attempt",
    "The engine starts. THE ENGINE STOPS.",
]
DOMAINS = ["sound", "music", "speech", None]
SOURCES = ["audioset", "vggsound", "mls"]


# ---------------------------------------------------------------------------------------------- references

def ref_tokens(text: str) -> list[str]:
    """Python twin of the SQL tokeniser: lowercase, split on anything but letters and digits."""
    return [t for t in re.split(r"[\W_]+", text.lower()) if t]


def ref_terms(text: str) -> set[str]:
    return {t for t in ref_tokens(text) if t not in text_index.STOP_WORDS}


def ref_text_match(query: str, caption: str) -> bool:
    """The documented semantics, written independently of parse_query."""
    phrases = [p.strip() for p in re.findall(r'"([^"]*)"', query)]
    items = [(w, False) for w in re.sub(r'"([^"]*)"', " ", query).split()] + [(p, True) for p in phrases if p]
    terms = ref_terms(caption)
    for item, _is_phrase in items:
        if not {t for t in ref_tokens(item) if t not in text_index.STOP_WORDS} <= terms:
            return False
        if ref_tokens(item) != [item.lower()] and item.lower() not in caption.lower():
            return False
    return True


# ---------------------------------------------------------------------------------------------- corpus

def _corpus(rng: np.random.Generator, n: int) -> list[dict]:
    cuts = []
    for i in range(n):
        if i < len(SPECIAL_CAPTIONS):
            caption = SPECIAL_CAPTIONS[i]
        else:
            words = rng.choice(WORDS, size=int(rng.integers(3, 9))).tolist()
            caption = " ".join(words).capitalize() + rng.choice([".", "!", ", in summary.", " -- ok"])
        tags = tuple(dict.fromkeys(rng.choice(TAGS, size=int(rng.integers(0, 5))).tolist()))
        cut = make_cut(f"clip-{i:03d}", tags=tags, caption=caption, domain=DOMAINS[i % len(DOMAINS)],
                       duration=float(round(rng.uniform(1.0, 12.0), 2)), source=SOURCES[i % len(SOURCES)])
        cuts.append(cut)
    return cuts


@pytest.fixture
def corpus(con, tmp_path: Path):
    """60 clips ingested, two merges and a prune decided; returns (con, cuts by clip_id, view, state)."""
    cuts = _corpus(np.random.default_rng(7), 60)
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    record_decision(con, Decision.merge(["dogs"], into="dog"), by="test")
    record_decision(con, Decision.prune(["noise"]), by="test")
    state = replay(list_decisions(con))
    view = compute_vocabulary(load_tag_matrix(con), state)
    return con, {c["id"]: c for c in cuts}, view, state


def _custom(cut: dict) -> dict:
    return cut["supervisions"][0]["custom"]


def _all_pages(con, filters: BrowseFilters, view, state, limit: int) -> list:
    rows, after, pages = [], None, 0
    while True:
        page = browse_page(con, filters, view=view, state=state, after_clip_key=after, limit=limit)
        rows += page.rows
        pages += 1
        assert len(page.rows) <= limit
        if not page.has_more:
            assert page.next_after is None
            return rows
        assert page.next_after == page.rows[-1].clip_key
        after = page.next_after
        assert pages < 1000


def _reference(cuts: dict, filters: BrowseFilters, view, state, audited: set[str] = frozenset()) -> list[str]:
    rank = dict(zip(view.ranking["tag"], view.ranking["rank"]))
    out = []
    for clip_id, cut in cuts.items():  # dict order = ingest order = clip_key order
        custom = _custom(cut)
        canonical = {state.canonical(t) for t in custom["audio_tag"]} - set(state.pruned)
        wanted = {state.canonical(t) for t in filters.canonical_tags}
        if filters.canonical_tags:
            if filters.tag_mode == "any" and not canonical & wanted:
                continue
            if filters.tag_mode == "all" and not wanted <= canonical:
                continue
        if filters.raw_tag is not None and filters.raw_tag not in custom["audio_tag"]:
            continue
        if filters.domains and (custom.get("domain") or "unknown") not in filters.domains:
            continue
        source = cut["recording"]["sources"][0]["source"]
        if filters.sources and source not in filters.sources:
            continue
        if filters.min_duration_s is not None and cut["duration"] < filters.min_duration_s:
            continue
        if filters.max_duration_s is not None and cut["duration"] > filters.max_duration_s:
            continue
        if filters.text.strip() and not ref_text_match(filters.text, custom["caption"]):
            continue
        if filters.no_tag_at_k is not None and min((rank[t] for t in canonical if t in rank),
                                                   default=10**9) <= filters.no_tag_at_k:
            continue
        if filters.audited is not None and (clip_id in audited) != filters.audited:
            continue
        out.append(clip_id)
    return out


# ---------------------------------------------------------------------------------------------- tokenisation

def test_tokenize_lowercases_splits_on_non_alphanumerics_and_drops_stop_words(con):
    text = "The Dog's BARK, 50%_off! Café—naïve\tw1\nX of-the rock-n-roll"
    assert text_index.tokenize(con, text) == ["dog", "s", "bark", "50", "off", "café", "naïve", "w1", "x", "rock",
                                              "n", "roll"]
    assert text_index.tokenize(con, "") == []
    assert text_index.tokenize(con, "the and of %%% ___") == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=60))
def test_ascii_fast_path_tokenises_like_the_unicode_path(con, text):
    # The SQL tokeniser takes a fast path for pure-ASCII text; adding one non-ASCII word forces the regex path.
    [(_, fast)] = store_browse.raw_tokens(con, [text])
    [(_, slow)] = store_browse.raw_tokens(con, [text + " é"])
    assert slow == fast + ["é"]
    assert fast == ref_tokens(text)


def test_index_after_ingest_holds_each_clip_term_once(corpus):
    con, cuts, _view, _state = corpus
    rows = con.execute("SELECT c.clip_id, t.term FROM caption_postings p JOIN caption_terms t USING (term_id) "
                       "JOIN clips c USING (clip_key)").fetchall()
    assert len(rows) == len(set(rows))  # postings are distinct (clip, term) pairs
    got: dict[str, set[str]] = {}
    for clip_id, term in rows:
        got.setdefault(clip_id, set()).add(term)
    expected = {cid: ref_terms(_custom(cut)["caption"]) for cid, cut in cuts.items() if ref_terms(_custom(cut)["caption"])}
    assert got == expected


@pytest.mark.parametrize("batch_clips", [60_000, 7, 1])
def test_full_rebuild_and_scoped_reindex_give_the_same_postings(corpus, monkeypatch, batch_clips):
    con, _cuts, _view, _state = corpus
    monkeypatch.setattr(store_browse, "_INDEX_BATCH_CLIPS", batch_clips)
    query = "SELECT t.term, p.clip_key FROM caption_postings p JOIN caption_terms t USING (term_id) ORDER BY ALL"
    before = con.execute(query).fetchall()
    report = text_index.index_captions(con)
    assert report.clips == 60 and report.new_terms == 0 and report.total_postings == len(before)
    assert con.execute(query).fetchall() == before
    assert con.execute("SELECT count(*) FROM (SELECT DISTINCT * FROM caption_postings)").fetchall()[0][0] == len(before)
    report = text_index.index_captions(con, [3, 5, 5, 60])
    assert report.clips == 3
    assert con.execute(query).fetchall() == before
    assert store_browse.unindexed_clip_count(con) == 0


# ---------------------------------------------------------------------------------------------- search

def test_search_requires_every_word(corpus):
    con, cuts, _view, _state = corpus
    key_of = {cid: k + 1 for k, cid in enumerate(cuts)}
    for query in ["dog", "dog bark", "piano music rain", "Engine", "café naïve", "dog zebra", "barking dog car"]:
        expected = [key_of[cid] for cid, cut in cuts.items() if ref_text_match(query, _custom(cut)["caption"])]
        assert text_index.search(con, query).tolist() == expected, query
    # AND, not OR: a clip with only one of the words is not found.
    assert set(text_index.search(con, "dog bark")) < set(text_index.search(con, "dog"))


@pytest.mark.parametrize("query", [
    "100%", "%", "_", "snake_case", "under_scores", '"quoted words"', "'single", "quotes'", '"', "'",
    "'; DROP TABLE clips; --", "--", ";", "\\", "Back\\slash", "percent%", "x' OR '1'='1", "%'", "_%_",
    '"the engine"', '"THE ENGINE STOPS"', "\"unbalanced", "a'b\"c", "(", ")", "*", "[", "?", "$1", ":x",
])
def test_metacharacters_are_literal_text_and_never_raise(corpus, query):
    con, cuts, _view, _state = corpus
    key_of = {cid: k + 1 for k, cid in enumerate(cuts)}
    expected = [key_of[cid] for cid, cut in cuts.items() if ref_text_match(query, _custom(cut)["caption"])]
    assert text_index.search(con, query).tolist() == expected
    assert con.execute("SELECT count(*) FROM clips").fetchall()[0][0] == 60


def test_literal_queries_find_exactly_their_caption(corpus):
    con, _cuts, _view, _state = corpus
    for query, clip_key in [("100%", 1), ("snake_case", 2), ('"quoted words"', 3), ("'; DROP TABLE clips; --", 4),
                            ("x' OR '1'='1", 5), ("percent%", 5), ('"the engine stops"', 6)]:
        assert text_index.search(con, query).tolist() == [clip_key], query
    # % and _ are not wildcards: "100_" would match "100%" under LIKE.
    assert text_index.search(con, "100_").tolist() == []
    assert text_index.search(con, "snake%case").tolist() == []


def test_quoted_phrase_is_checked_as_a_substring(corpus):
    con, _cuts, _view, _state = corpus
    assert text_index.search(con, '"the engine starts"').tolist() == [6]
    assert text_index.search(con, '"engine the"').tolist() == []  # both words occur, not in this order


def test_query_without_words_is_refused_and_missing_index_is_named(con, tmp_path):
    ingest_path(con, write_jsonl(tmp_path / "a.jsonl", [make_cut("a", caption="a dog barks")]))
    with pytest.raises(ValueError, match="no word"):
        text_index.search(con, "the of ")
    con.execute("DELETE FROM caption_postings")
    with pytest.raises(text_index.TextIndexMissingError, match="index_captions"):
        text_index.search(con, "dog")
    state = replay([])
    view = compute_vocabulary(load_tag_matrix(con), state)
    with pytest.raises(BrowseError, match="index_captions"):
        browse_page(con, BrowseFilters(text="dog"), view=view, state=state)
    assert len(browse_page(con, BrowseFilters(), view=view, state=state).rows) == 1  # other filters still work
    text_index.index_captions(con)
    assert text_index.search(con, "dog").tolist() == [1]


def test_reingest_with_a_changed_caption_updates_the_index(con, tmp_path):
    first = [make_cut("a", caption="A dog barks."), make_cut("b", caption="Rain on a roof.")]
    ingest_path(con, write_jsonl(tmp_path / "one.jsonl", first))
    assert text_index.search(con, "dog").tolist() == [1]
    assert text_index.search(con, "zebra").tolist() == []
    ingest_path(con, write_jsonl(tmp_path / "two.jsonl", [make_cut("a", caption="A zebra grazes quietly.")]))
    assert text_index.search(con, "zebra").tolist() == [1]
    assert text_index.search(con, "dog").tolist() == []
    assert text_index.search(con, "rain").tolist() == [2]  # clips outside the re-ingest keep their postings
    assert store_browse.index_status(con)["postings"] == len(ref_terms("A zebra grazes quietly.")) + 2


def test_failed_ingest_leaves_the_index_untouched(con, tmp_path, monkeypatch):
    ingest_path(con, write_jsonl(tmp_path / "one.jsonl", [make_cut("a", caption="A dog barks.")]))
    before = con.execute("SELECT * FROM caption_postings ORDER BY ALL").fetchall()

    def fail_after_indexing(*args, **kwargs):
        raise RuntimeError("disk full")

    # The reindex ran inside the ingest transaction, so the failure after it must undo it too.
    monkeypatch.setattr(store_ingest, "finish_ingest", fail_after_indexing)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest_path(con, write_jsonl(tmp_path / "two.jsonl", [make_cut("a", caption="A zebra.")]))
    assert con.execute("SELECT * FROM caption_postings ORDER BY ALL").fetchall() == before
    assert text_index.search(con, "zebra").tolist() == []


# ---------------------------------------------------------------------------------------------- browse

FILTER_CASES = [
    BrowseFilters(),
    BrowseFilters(canonical_tags=("dog",)),
    BrowseFilters(canonical_tags=("dogs",)),  # a merged raw name means its canonical tag
    BrowseFilters(canonical_tags=("dog", "piano"), tag_mode="any"),
    BrowseFilters(canonical_tags=("dog", "music"), tag_mode="all"),
    BrowseFilters(canonical_tags=("noise",)),  # pruned: nothing
    BrowseFilters(canonical_tags=("dog", "noise"), tag_mode="any"),
    BrowseFilters(canonical_tags=("dog", "nonexistent"), tag_mode="all"),
    BrowseFilters(raw_tag="dogs"),
    BrowseFilters(raw_tag="no such tag"),
    BrowseFilters(domains=("sound",)),
    BrowseFilters(domains=("unknown", "music")),
    BrowseFilters(sources=("mls",)),
    BrowseFilters(min_duration_s=4.0),
    BrowseFilters(max_duration_s=6.5),
    BrowseFilters(min_duration_s=3.0, max_duration_s=9.0),
    BrowseFilters(text="dog"),
    BrowseFilters(text="dog bark"),
    BrowseFilters(text='"dog bark"'),
    BrowseFilters(text="%"),
    BrowseFilters(text="the"),  # stop words only: no restriction
    BrowseFilters(text="zebra"),
    BrowseFilters(no_tag_at_k=0),
    BrowseFilters(no_tag_at_k=2),
    BrowseFilters(no_tag_at_k=5),
    BrowseFilters(audited=True),
    BrowseFilters(audited=False),
    BrowseFilters(canonical_tags=("music",), domains=("music", "sound"), min_duration_s=2.0),
    BrowseFilters(text="music", sources=("audioset", "vggsound"), audited=False),
    BrowseFilters(text='"in summary"', canonical_tags=("rain", "wind"), max_duration_s=11.0),
    BrowseFilters(raw_tag="bark", text="dog", no_tag_at_k=3),
    BrowseFilters(no_tag_at_k=5, domains=("speech", "sound"), audited=False),
    BrowseFilters(canonical_tags=("car", "bird", "rain"), text="-- ok", sources=("mls", "audioset")),
]


@pytest.mark.parametrize("filters", FILTER_CASES, ids=lambda f: ",".join(f.active()) or "none")
def test_each_filter_alone_and_combined_matches_the_reference(corpus, filters):
    con, cuts, view, state = corpus
    audited_ids = [cid for i, cid in enumerate(cuts) if i % 4 == 1]
    for i, clip_id in enumerate(audited_ids):
        store_browse.add_submitted_audit_slot(con, campaign_id=1, clip_key=int(clip_id.split("-")[1]) + 1,
                                              annotator=f"ann{i % 2}")
    # Claimed but never submitted: not audited.
    store_browse.add_submitted_audit_slot(con, campaign_id=2, clip_key=1, annotator="late", submitted=False)
    expected = _reference(cuts, filters, view, state, audited=set(audited_ids))
    got = [row.clip_id for row in _all_pages(con, filters, view, state, limit=7)]
    assert got == expected
    assert count_matching(con, filters, view=view, state=state) == len(expected)  # the total Browse shows


@pytest.mark.parametrize("limit", [1, 2, 5, 25])
def test_keyset_pages_visit_every_match_once_in_order(corpus, limit):
    con, cuts, view, state = corpus
    for filters in (BrowseFilters(), BrowseFilters(text="dog"), BrowseFilters(text='"dog"', domains=("sound",)),
                    BrowseFilters(canonical_tags=("music", "rain"))):
        rows = _all_pages(con, filters, view, state, limit=limit)
        keys = [row.clip_key for row in rows]
        assert keys == sorted(set(keys))
        assert [row.clip_id for row in rows] == _reference(cuts, filters, view, state)


def test_literal_checks_read_candidates_chunk_by_chunk(corpus, monkeypatch):
    con, cuts, view, state = corpus
    # Tiny chunks, so that filling one page takes several rounds (at scale the first chunk is 1,024 clips).
    monkeypatch.setattr(browse, "_FIRST_CHUNK", 1)
    monkeypatch.setattr(browse, "_MAX_CHUNK", 4)
    for filters in (BrowseFilters(text='"dog bark"'), BrowseFilters(text="%"), BrowseFilters(text="!"),
                    BrowseFilters(text="-- ok", sources=("mls", "vggsound")),
                    BrowseFilters(text='"in summary"', canonical_tags=("rain", "dog"), domains=("sound", "music"))):
        for limit in (1, 2, 3):
            rows = _all_pages(con, filters, view, state, limit=limit)
            assert [row.clip_id for row in rows] == _reference(cuts, filters, view, state), (filters, limit)


def test_text_pages_read_the_index_window_by_window(corpus, monkeypatch):
    con, cuts, view, state = corpus
    # Windows of 1, 2, 4... clip keys (at scale the first is 16,384), so that a page spans many windows, a rare
    # word's matches lie windows apart, and the last window ends exactly at the last clip.
    monkeypatch.setattr(browse, "_FIRST_WINDOW", 1)
    monkeypatch.setattr(browse, "_WINDOW_GROWTH", 2)
    windows = []
    real = text_index.candidate_clip_keys
    monkeypatch.setattr(text_index, "candidate_clip_keys",
                        lambda c, q, low=None, high=None: windows.append((low, high)) or real(c, q, low=low, high=high))
    for filters in (BrowseFilters(text="dog"), BrowseFilters(text="dog bark"), BrowseFilters(text="café"),
                    BrowseFilters(text="zebra"), BrowseFilters(text='"dog bark"', sources=("mls", "audioset")),
                    BrowseFilters(text="music", canonical_tags=("rain", "wind"), max_duration_s=9.0),
                    BrowseFilters(text="rain", raw_tag="bark")):
        for limit in (1, 3, 25):
            windows.clear()
            rows = _all_pages(con, filters, view, state, limit=limit)
            assert [row.clip_id for row in rows] == _reference(cuts, filters, view, state), (filters, limit)
            assert windows and all(low is not None and high >= low for low, high in windows)
    # A page of a common word stops at the first windows that fill it: it never reads the whole index.
    windows.clear()
    page = browse_page(con, BrowseFilters(text="dog"), view=view, state=state, limit=1)
    assert page.has_more and max(high for _low, high in windows) < 60


def test_cursors_of_one_connection_browse_from_several_threads(corpus):
    con, cuts, view, state = corpus
    filters = [BrowseFilters(text="dog", sources=("mls", "audioset")), BrowseFilters(canonical_tags=("music",)),
               BrowseFilters(text='"dog bark"', min_duration_s=2.0), BrowseFilters(raw_tag="rain", audited=False)]
    expected = [_reference(cuts, f, view, state) for f in filters]

    def work(i: int) -> bool:
        cursor = con.cursor()  # DuckDB: one connection shared by threads raises; a cursor per thread does not
        try:
            return all([r.clip_id for r in _all_pages(cursor, filters[(i + j) % 4], view, state, limit=3)]
                       == expected[(i + j) % 4] for j in range(8))
        finally:
            cursor.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(work, range(8)))


def test_clip_keys_with_gaps_still_map_to_view_rows(corpus):
    con, cuts, _view, _state = corpus
    # Keys are dense after ingest; a database whose first clips are gone takes the slower, exact mapping.
    for table in ("captions", "clip_tags", "caption_postings", "clips"):
        con.execute(f"DELETE FROM {table} WHERE clip_key IN (1, 2)")
    state = replay(list_decisions(con))
    view = compute_vocabulary(load_tag_matrix(con), state)
    assert view_clip_keys(con, view).tolist() == list(range(3, 61))
    remaining = dict(list(cuts.items())[2:])
    for filters in (BrowseFilters(canonical_tags=("dog",)), BrowseFilters(no_tag_at_k=2), BrowseFilters(text="dog")):
        rows = _all_pages(con, filters, view, state, limit=4)
        assert [row.clip_id for row in rows] == _reference(remaining, filters, view, state)
        for row in rows:
            custom = _custom(cuts[row.clip_id])
            canonical = {state.canonical(t) for t in custom["audio_tag"]} - set(state.pruned)
            assert set(row.canonical_tags) == canonical


def test_page_rows_carry_captions_and_tags(corpus):
    con, cuts, view, state = corpus
    page = browse_page(con, BrowseFilters(raw_tag="dogs"), view=view, state=state, limit=100)
    assert page.rows and not page.has_more and page.next_after is None
    for row in page.rows:
        custom = _custom(cuts[row.clip_id])
        assert row.caption == custom["caption"]
        assert row.original_captions == tuple(custom["original_caption"])
        assert row.raw_tags == tuple(sorted(set(custom["audio_tag"])))
        assert "dog" in row.canonical_tags and "dogs" not in row.canonical_tags
        ranks = dict(zip(view.ranking["tag"], view.ranking["rank"]))
        assert [ranks[t] for t in row.canonical_tags] == sorted(ranks[t] for t in row.canonical_tags)
    assert list(page.as_frame().columns)[:2] == ["clip_key", "clip_id"]


def test_keeps_no_tag_at_k(corpus):
    con, cuts, view, state = corpus
    for k in (0, 1, 3, len(view.ranking)):
        rows = _all_pages(con, BrowseFilters(no_tag_at_k=k), view, state, limit=10)
        lost = set(view.clip_ids[view.best_rank > k].tolist())
        assert {row.clip_id for row in rows} == lost
        top = set(view.top_k(k))
        assert all(not set(row.canonical_tags) & top for row in rows)
    # K = 0 keeps nothing, so every clip shows; K = all tags leaves only clips without any canonical tag.
    assert len(_all_pages(con, BrowseFilters(no_tag_at_k=0), view, state, limit=50)) == 60


def test_audited_means_a_submitted_slot(corpus):
    con, _cuts, view, state = corpus
    store_browse.add_submitted_audit_slot(con, campaign_id=1, clip_key=3, annotator="ana")
    store_browse.add_submitted_audit_slot(con, campaign_id=1, clip_key=3, annotator="bo", slot=1)
    store_browse.add_submitted_audit_slot(con, campaign_id=1, clip_key=4, annotator="ana", submitted=False)
    audited = [r.clip_key for r in _all_pages(con, BrowseFilters(audited=True), view, state, limit=25)]
    assert audited == [3]
    not_audited = [r.clip_key for r in _all_pages(con, BrowseFilters(audited=False), view, state, limit=25)]
    assert 3 not in not_audited and 4 in not_audited and len(not_audited) == 59
    assert clip_detail(con, 3).audit_submissions == 2


def test_clip_detail_lists_every_caption_and_tag_with_provenance(corpus, tmp_path):
    con, cuts, view, _state = corpus
    detail = clip_detail(con, 7, view=view)
    cut = cuts[detail.clip_id]
    assert [c.kind for c in detail.captions] == ["generated", "original"]
    assert detail.captions[0].text == _custom(cut)["caption"] and detail.captions[0].captioner == "manifest"
    assert detail.raw_tags == tuple((t, "manifest") for t in sorted(set(_custom(cut)["audio_tag"])))
    assert detail.canonical_tags == browse_page(con, BrowseFilters(), view=view, state=_state,
                                                after_clip_key=6, limit=1).rows[0].canonical_tags
    assert clip_detail(con, 10_000) is None
    ingest_path(con, write_jsonl(tmp_path / "more.jsonl", [make_cut(detail.clip_id, caption="Another text.")]),
                captioner="second-model")
    captioners = {(c.kind, c.captioner) for c in clip_detail(con, 7).captions}
    assert {("generated", "manifest"), ("generated", "second-model")} <= captioners
    # Two generated captions: the clip is found by the words of either.
    assert 7 in text_index.search(con, "another").tolist() and 7 in text_index.search(con, cut_word(cut)).tolist()


def cut_word(cut: dict) -> str:
    return sorted(ref_terms(_custom(cut)["caption"]))[0]


def test_clips_ingested_after_the_view_are_browsable_without_canonical_tags(corpus, tmp_path):
    con, _cuts, view, state = corpus
    ingest_path(con, write_jsonl(tmp_path / "late.jsonl", [make_cut("late", caption="A late zebra.", tags=("dog",))]))
    rows = browse_page(con, BrowseFilters(text="zebra"), view=view, state=state).rows
    assert [(r.clip_id, r.canonical_tags) for r in rows] == [("late", ())]
    # Canonical filters come from the view: the late clip is not in it until the view is recomputed.
    assert "late" not in {r.clip_id for r in _all_pages(con, BrowseFilters(canonical_tags=("dog",)), view, state, 50)}


def test_a_view_of_another_database_is_refused(corpus, tmp_path):
    con, _cuts, _view, _state = corpus
    other = store.connect(tmp_path / "other.duckdb")
    try:
        ingest_path(other, write_jsonl(tmp_path / "o.jsonl", [make_cut(f"o{i}") for i in range(3)]))
        other_view = compute_vocabulary(load_tag_matrix(other), replay([]))
    finally:
        other.close()
    with pytest.raises(BrowseError, match="another database"):
        view_clip_keys(con, other_view)


@pytest.mark.parametrize("kwargs, message", [
    ({"tag_mode": "some"}, "tag_mode"),
    ({"min_duration_s": 5.0, "max_duration_s": 1.0}, "swap"),
    ({"no_tag_at_k": -1}, "K >= 0"),
    ({"domains": "sound"}, "tuple"),
])
def test_impossible_filters_are_refused_with_the_fix(kwargs, message):
    with pytest.raises(BrowseError, match=message):
        BrowseFilters(**kwargs)


def test_page_size_must_be_positive(corpus):
    con, _cuts, view, state = corpus
    with pytest.raises(BrowseError, match="at least 1"):
        browse_page(con, BrowseFilters(), view=view, state=state, limit=0)


def test_active_names_the_set_filters():
    assert BrowseFilters().active() == ()
    assert BrowseFilters(text="  ").active() == ()
    assert BrowseFilters(canonical_tags=["dog"], audited=False, no_tag_at_k=0).active() == (
        "canonical_tags", "no_tag_at_k", "audited")
