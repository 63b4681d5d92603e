"""Hostile input: SQL metacharacters in search boxes find literal text and change nothing; audio paths that point
outside the roots (../, absolute, symlinks) are refused even when a manifest names them; untrusted text shown
through markdown is made literal; HTML highlighting never splits an entity."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
from helpers import make_cut, open_app_page, write_jsonl

from curation import settings
from curation.explore.browse import BrowseFilters, browse_page
from curation.ingest.audio_access import AudioAccessError, servable_audio_path
from curation.ingest.ingest import ingest_path
from curation.vocabulary.decisions import list_decisions, replay
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix, ranking_table
from curation.vocabulary.tag_details import highlight
from ui.text import escape_markdown, inline_code

CAPTIONS = {
    "drop": "A caption holding '; DROP TABLE clips; -- as plain text",
    "percent": "It is 100% certain: a dog barks",
    "underscore": "snake_case words appear here",
    "quote": 'He said "quoted words" aloud',
    "plain": "A dog barks in the rain",
}
# ';' is refused in tags (the UTS recipe's separator), so the injection attempt in a tag goes without it.
TAGS = {"drop": ("' or 1=1) drop table clips --", "dog"), "percent": ("100%", "dog"), "underscore": ("snake_case",),
        "quote": ('say "hi"', "speech"), "plain": ("dog", "rain")}


@pytest.fixture
def corpus(con, tmp_path):
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [make_cut(key, caption=CAPTIONS[key], tags=TAGS[key])
                                                           for key in CAPTIONS]))
    return con


def _browse(con, **filters) -> list[str]:
    state = replay(list_decisions(con))
    view = compute_vocabulary(load_tag_matrix(con), state)
    page = browse_page(con, BrowseFilters(**filters), view=view, state=state, limit=50)
    return sorted(row.clip_id for row in page.rows)


@pytest.mark.parametrize("query, expected", [
    ("'; DROP TABLE clips; --", ["drop"]),
    ("%", ["percent"]),
    ("100%", ["percent"]),
    ("_", ["underscore"]),
    ("snake_case", ["underscore"]),
    ('"', ["quote"]),
    ('"quoted words"', ["quote"]),
    ("' OR '1'='1", []),
])
def test_caption_search_finds_metacharacters_literally(corpus, query, expected):
    assert _browse(corpus, text=query) == expected
    assert corpus.execute("SELECT count(*) FROM clips").fetchall() == [(5,)]  # and nothing was dropped


@pytest.mark.parametrize("raw_tag, expected", [
    ("' or 1=1) drop table clips --", ["drop"]), ("100%", ["percent"]), ('say "hi"', ["quote"]), ("snake_case", ["underscore"]),
])
def test_tag_filters_match_quoted_and_wildcard_tags_exactly(corpus, raw_tag, expected):
    assert _browse(corpus, raw_tag=raw_tag) == expected
    assert _browse(corpus, canonical_tags=(raw_tag,)) == expected


@pytest.mark.parametrize("query, expected", [
    ("' or 1=1)", ["' or 1=1) drop table clips --"]), ("%", ["100%"]), ("_", ["snake_case"]), ('"', ['say "hi"']),
    ("(", []), ("[a-z]", []),
])
def test_vocabulary_search_is_a_literal_substring(corpus, query, expected):
    matrix = load_tag_matrix(corpus)
    view = compute_vocabulary(matrix, replay(list_decisions(corpus)))
    assert sorted(ranking_table(view, matrix, k=10, query=query)["tag"]) == expected


def test_manifest_audio_paths_outside_the_roots_are_refused(con, tmp_path, monkeypatch):
    monkeypatch.delenv(settings.AUDIO_ROOTS.name, raising=False)
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    tone = np.zeros(1600, dtype=np.float32)
    soundfile.write(root / "audio" / "ok.wav", tone, 16000)
    secret = tmp_path / "secret.wav"
    soundfile.write(secret, tone, 16000)
    (root / "audio" / "escape.wav").symlink_to(secret)
    depth = "../" * len(root.parts)
    cuts = [make_cut("ok", source="audio/ok.wav"), make_cut("dots", source=f"{depth}etc/passwd.wav"),
            make_cut("parent", source="../secret.wav"), make_cut("absolute", source=str(secret)),
            make_cut("link", source="audio/escape.wav")]
    ingest_path(con, write_jsonl(root / "cuts.jsonl", cuts))
    paths = dict(con.execute("SELECT clip_id, audio_path FROM clips").fetchall())
    assert servable_audio_path(con, paths["ok"]) == (root / "audio" / "ok.wav").resolve()
    for clip_id in ("dots", "parent", "absolute", "link"):
        with pytest.raises(AudioAccessError):
            servable_audio_path(con, paths[clip_id])
    for hostile in ("../../etc/passwd", "/etc/passwd", str(root / "audio" / ".." / ".." / "secret.wav"), "\x00",
                    str(root / "audio" / "ok.wav\x00.txt")):
        with pytest.raises(AudioAccessError):
            servable_audio_path(con, hostile)


def test_browse_page_shows_refused_audio_as_text_not_a_player(con, db_path, tmp_path, monkeypatch):
    monkeypatch.delenv(settings.AUDIO_ROOTS.name, raising=False)
    root = tmp_path / "corpus"
    root.mkdir()
    secret = tmp_path / "secret.wav"
    soundfile.write(secret, np.zeros(1600, dtype=np.float32), 16000)
    ingest_path(con, write_jsonl(root / "cuts.jsonl", [make_cut("absolute", source=str(secret))]))
    con.close()
    app = open_app_page(db_path, monkeypatch, "views/browse.py", name="ana")
    assert not app.get("audio")
    assert any("outside the configured audio roots" in c.value for c in app.caption)


def test_markdown_escaping_makes_untrusted_text_literal():
    hostile = "[x](javascript:alert(1)) <img src=x onerror=alert(1)> :red[boom] $x$ **b** `c`\x00\x1b\n#h"
    escaped = escape_markdown(hostile)
    assert "\x00" not in escaped and "\x1b" not in escaped and "\n" not in escaped
    for char in "[]()<>:*`$#":
        assert f"\\{char}" in escaped
    assert escaped.replace("\\", "") == hostile.replace("\x00", "").replace("\x1b", "").replace("\n", " ")
    assert inline_code("a`b") == "`` a`b ``" and inline_code("drum") == "`drum`"


def test_highlighting_escapes_html_and_never_splits_an_entity():
    out = highlight('<script>alert("lt")</script> & <img src=x onerror=alert(1)>', ["lt", "amp", "script", "img"])
    assert "<script" not in out and "<img" not in out
    assert "&lt;" in out and "&amp;" in out and "&<mark>" not in out
    assert "<mark>lt</mark>" in out  # the word itself is still highlighted
