"""Corpus overview: the headline figures and distributions behind the Overview page.

Place in the flow: read-only view of what ingest wrote. Example: ``load_overview(store.connect()).clips``.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from curation.store import corpus as store_corpus


@dataclass(frozen=True)
class CorpusOverview:
    clips: int
    captions: int
    tag_rows: int
    distinct_tags: int
    hours: float
    playable_clips: int
    by_domain_source: pd.DataFrame  # domain, source, clips, hours
    durations: pd.DataFrame  # duration_s, domain
    caption_lengths: pd.DataFrame  # kind, characters, words
    tags_per_clip: pd.DataFrame  # clip_key, domain, tags
    top_tags: pd.DataFrame  # tag, clips
    ingests: pd.DataFrame  # the ingest log, newest first

    @property
    def is_empty(self) -> bool:
        return self.clips == 0


def load_overview(con: duckdb.DuckDBPyConnection, top_tags: int = 30) -> CorpusOverview:
    stats = store_corpus.corpus_stats(con)
    frames = store_corpus.overview_frames(con, top_tags=top_tags)
    audio = frames.pop("audio")
    return CorpusOverview(
        clips=stats["clips"], captions=stats["captions"], tag_rows=stats["tag_rows"],
        distinct_tags=stats["distinct_tags"], hours=float(frames["by_domain_source"]["hours"].sum()),
        playable_clips=int(audio["playable"].iloc[0]), **frames)
