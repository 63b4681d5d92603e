"""Test helpers: the exact UTS example record, builders for UTS-layout manifests, table snapshots."""
from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

from curation import settings
from curation.store import corpus as store_corpus

PROJECT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT.parent / "shared" / "data"

# A record exactly as the UTS release writes it (supervisions[0].custom holds tags, caption, original captions;
# recording.sources[0].source holds the source dataset's name, not a path).
UTS_EXAMPLE_RECORD = {
    "id": "Y--0w1YA1Hm4_30.000",
    "start": 0.0,
    "duration": 10.0,
    "channel": 0,
    "supervisions": [{
        "id": "Y--0w1YA1Hm4_30.000",
        "recording_id": "Y--0w1YA1Hm4_30.000",
        "start": 0.0,
        "duration": 10.0,
        "channel": 0,
        "custom": {
            "audio_tag": ["electronic", "music", "synthesizer", "beat", "studio", "energetic", "dance"],
            "caption": ("The audio clip opens with a pulsing electronic beat driven by a punchy kick drum. "
                        "A bright synthesizer lead plays a repeating melodic figure over sustained pads. "
                        "In summary, this is an energetic, studio-produced electronic dance track."),
            "original_caption": ["Electronic music with a steady beat plays."],
        },
    }],
    "recording": {
        "id": "Y--0w1YA1Hm4_30.000",
        "sources": [{"type": "file", "channels": [0], "source": "audioset"}],
        "sampling_rate": 16000,
        "num_samples": 160000,
        "duration": 10.0,
        "channel_ids": [0],
    },
    "type": "MonoCut",
}


def make_cut(clip_id: str, *, tags=("music", "studio"), caption="A caption. In summary, a clip.",
             original=("a human caption",), source="audio/x.wav", duration=10.0, domain=None) -> dict:
    cut = copy.deepcopy(UTS_EXAMPLE_RECORD)
    cut["id"] = clip_id
    cut["duration"] = duration
    custom = cut["supervisions"][0]["custom"]
    custom["audio_tag"] = list(tags)
    custom["caption"] = caption
    custom["original_caption"] = list(original)
    if domain:
        custom["domain"] = domain
    cut["recording"]["sources"][0]["source"] = source
    return cut


def write_jsonl(path: Path, records, *, gz: bool | None = None) -> Path:
    lines = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    if gz if gz is not None else path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(lines)
    else:
        path.write_text(lines, encoding="utf-8")
    return path


def table_snapshot(con) -> dict:
    return {name: list(store_corpus.iter_table_rows(con, name))
            for name in ("clips", "captions", "tags", "clip_tags", "ingests", "ingest_bad_rows",
                         "ingest_missing_audio")}


def open_app_page(db_path: Path, monkeypatch, page: str | None = None, *, name: str | None = None,
                  timeout_s: int = 120):
    """app.py under Streamlit's AppTest on ``db_path``, switched to ``page`` (views/...), working as ``name``;
    fails the test if the first run raised."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(settings.DB.name, str(db_path))
    monkeypatch.chdir(PROJECT)
    app = AppTest.from_file(str(PROJECT / "app.py"), default_timeout=timeout_s)
    if name is not None:
        app.session_state["display_name"] = name
    if page is not None:
        app.switch_page(page)
    app.run()
    assert not app.exception, app.exception
    return app
