"""The Export page under AppTest: the preview counts what is left out and why, the export is written, listed with
its lineage, and its three files are offered for download."""
from __future__ import annotations

import pytest
from helpers import make_cut, open_app_page, write_jsonl

from curation import settings, store
from curation.ingest.ingest import ingest_path
from curation.vocabulary.export_preview import preview_export


@pytest.fixture
def corpus_db(db_path, tmp_path, monkeypatch):
    monkeypatch.setenv(settings.EXPORTS_DIR.name, str(tmp_path / "exports"))
    cuts = [make_cut(f"c{i}", tags=("music", "drum") if i % 2 else ("speech",), duration=5.0) for i in range(8)]
    cuts.append(make_cut("long", tags=("music",), duration=90.0))
    cuts.append(make_cut("rare", tags=("whistle",), duration=5.0))
    con = store.connect(db_path)
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    con.close()
    return db_path


def test_preview_counts_like_the_export(corpus_db):
    con = store.connect(corpus_db)
    preview = preview_export(con, k=3, min_duration_s=1.0, max_duration_s=60.0, drop_out_of_window=True)
    con.close()
    assert set(preview.vocabulary) == {"music", "drum", "speech"}  # "whistle" (one clip) ranks last
    assert preview.clips == 10
    assert preview.left_out == {"have no tag in the vocabulary at K": 1,
                                "are outside the duration window [1 s, 60 s]": 1}
    assert preview.clips_kept == 8


def test_write_list_and_download_an_export(corpus_db, monkeypatch):
    app = open_app_page(corpus_db, monkeypatch, "views/export.py", name="ana")
    app.number_input(key="export_k").set_value(3).run()
    assert [m.value for m in app.metric][:3] == ["3", "9", "1"]
    assert any("1 clips have no tag in the vocabulary at K" in m.value for m in app.markdown)
    app.checkbox(key="export_drop_window").check().run()
    assert [m.value for m in app.metric][1:3] == ["8", "2"]
    app.button(key="export_write").click().run()
    assert not app.exception, app.exception
    assert any("export 1: K=3" in s.value.replace("\\", "") for s in app.success), [e.value for e in app.error]
    table = app.dataframe[-1].value
    assert list(table["export_id"]) == [1] and list(table["k"]) == [3] and list(table["runs"]) == [""]
    downloads = [b for b in app.get("download_button")]
    assert [d.proto.label for d in downloads] == ["label_3.json", "label_3.txt", "cuts.jsonl.gz"]
