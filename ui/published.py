"""The "published vocabulary" panel of the Vocabulary page: compare the current vocabulary with a release list
(label_K.json: overlap at each K, rank correlation, tags in one list only) and seed it as the preferred canonical
targets of merge suggestions."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from curation.errors import UtsError
from curation.vocabulary import published
from ui.db import db_cursor
from ui.decide import apply_decision
from ui.state import tag_matrix

RELEASE_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "uts_vocab"


def render_published_compare() -> None:
    seeded = published.seeded(db_cursor())
    if seeded:
        st.caption(f"Seeded: {seeded['source']} ({seeded['labels']:,} labels, by {seeded['seeded_by']}); merge "
                   "suggestions map raw tags onto its labels first.")
    found = sorted(RELEASE_FOLDER.glob("label_*.json")) if RELEASE_FOLDER.is_dir() else []
    choice = st.selectbox("Published list", [str(p) for p in found] + ["other file..."], key="published_pick",
                          format_func=lambda p: Path(p).name if p != "other file..." else p)
    path = st.text_input("Path to label_K.json", key="published_path") if choice == "other file..." else choice
    if not path:
        return
    try:
        labels = published.load_published(path)
        report = published.compare(db_cursor(), labels, matrix=tag_matrix())
    except (UtsError, OSError) as exc:
        st.error(str(exc))
        return
    cols = st.columns(4)
    cols[0].metric("Published labels", f"{report.published:,}")
    cols[1].metric("In both lists", f"{report.shared:,}")
    cols[2].metric("Spearman", "-" if report.spearman is None else f"{report.spearman:.2f}")
    cols[3].metric("Kendall", "-" if report.kendall is None else f"{report.kendall:.2f}")
    st.dataframe(pd.DataFrame(report.overlap).rename(columns={"k": "K", "shared": "shared in top K",
                                                              "share": "share"}),
                 hide_index=True, width="stretch", key="published_overlap")
    left, right = st.columns(2)
    left.caption("Only in the published list (df here: clips with a raw tag so spelled)")
    left.dataframe(pd.DataFrame(report.only_published), hide_index=True, width="stretch", height=260,
                   key="published_only_theirs")
    right.caption(f"Only in our top {report.published:,}")
    right.dataframe(pd.DataFrame(report.only_ours), hide_index=True, width="stretch", height=260,
                    key="published_only_ours")
    seed_col, clear_col = st.columns(2)
    if seed_col.button(f"Seed {Path(path).name} as canonical targets", key="published_seed"):
        apply_decision(lambda name: published.seed(db_cursor(), labels, source=Path(path).name, by=name),
                       lambda count: f"Seeded {count:,} labels from {Path(path).name}")
    if seeded and clear_col.button("Clear the seeded list", key="published_clear"):
        apply_decision(lambda name: published.seed(db_cursor(), [], source="", by=name),
                       lambda _count: "The seeded published vocabulary is cleared")
