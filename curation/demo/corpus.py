"""The built-in demo corpus: synthesise it (``curation.demo.synth``), ingest it, and store its ground truth and
the simulated captioner's declared biases beside it so that audit dashboards can be checked against them.

Place in the flow: demo -> manifest.jsonl.gz (UTS layout) -> ingest -> everything else.

Example::

    con = store.connect("data/uts.duckdb")
    summary = build_and_ingest_demo(con, Path("data/uts_demo"), n_clips=600, seed=0)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from curation import store
from curation.demo.synth import build_demo_corpus
from curation.ingest.ingest import IngestSummary, ingest_path
from curation.store import corpus as store_corpus

DEMO_EXTRACTOR = "sim-extractor-v1"  # the simulated LLM tag extractor that wrote the demo's audio_tag lists


@dataclass(frozen=True)
class DemoSummary:
    corpus_dir: Path
    seconds_to_build: float
    ingest: IngestSummary


def default_demo_dir(db_path: Path) -> Path:
    """The demo's audio lives beside its database, so a temporary --db gets a temporary corpus too."""
    return db_path.parent / f"{db_path.stem}_demo"


def build_and_ingest_demo(con: duckdb.DuckDBPyConnection, out_dir: Path, *, n_clips: int = 600,
                          seed: int = 0) -> DemoSummary:
    import time

    started = time.perf_counter()
    files = build_demo_corpus(out_dir, n_clips=n_clips, seed=seed)
    built_s = time.perf_counter() - started
    summary = ingest_path(con, files.manifest_path, extractor=DEMO_EXTRACTOR)
    truth_rows = []
    with open(files.truth_path, encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            truth_rows.append((item["clip_id"], item["true_tags"], item["caption_tags"], item["applied_biases"],
                               json.dumps(item["attributes"])))
    with store.transaction(con):
        store_corpus.write_clip_truth(con, truth_rows)
        store_corpus.set_corpus_meta(con, "captioner_biases", json.loads(files.biases_path.read_text(encoding="utf-8")))
        store_corpus.set_corpus_meta(con, "demo", {"n_clips": n_clips, "seed": seed, "corpus_dir": str(out_dir),
                                            "captioner": "sim-captioner-v1", "extractor": DEMO_EXTRACTOR})
    return DemoSummary(corpus_dir=out_dir, seconds_to_build=built_s, ingest=summary)
