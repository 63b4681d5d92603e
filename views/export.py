"""Export: pick the ranking and K, see the vocabulary and what the export leaves out (clips without a tag at K,
without a duration, outside the duration window), write it, download label_K.json, label_K.txt and
cuts.jsonl.gz, and list past exports with their lineage and the runs that trained on them."""
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from curation.errors import UtsError
from curation.runs.compare import exports_with_runs
from curation.runs.launch import default_exports_root
from curation.vocabulary.export import RECIPE_MAX_DURATION_S, RECIPE_MIN_DURATION_S, export_vocabulary
from curation.vocabulary.export_preview import preview_export
from ui.auth import can
from ui.db import db_cursor
from ui.state import flash, require_name, selected_k, show_flash, tag_matrix, vocabulary_view

st.title("Export")
show_flash()
rank_by = st.segmented_control("Rank by", ["tfidf", "df"], default="tfidf", key="export_rank_by",
                               format_func={"tfidf": "TF-IDF score", "df": "document frequency"}.get) or "tfidf"
_matrix, _state, view = vocabulary_view(rank_by)
n_tags = len(view.ranking)
if n_tags == 0:
    st.info("No tags yet: ingest a tagged manifest or build the demo corpus (`python -m curation demo`).")
    st.stop()

left, right = st.columns(2)
k = left.number_input("Vocabulary size K", 1, n_tags, selected_k(n_tags), key="export_k",
                      help=f"1 to {n_tags:,} (the canonical tags of the current vocabulary).")
window = right.slider("Duration window (s)", 0.0, max(60.0, RECIPE_MAX_DURATION_S), (RECIPE_MIN_DURATION_S,
                      RECIPE_MAX_DURATION_S), step=0.5, key="export_window",
                      help="The UTS recipe keeps cuts of 1-60 s and drops the rest when it loads them.")
o1, o2 = st.columns(2)
drop_out_of_window = o1.checkbox("Leave out clips outside the window", key="export_drop_window",
                                 help="Off: they are kept and counted (the recipe drops them at load time).")
channels = o2.radio("Multi-channel clips", ["first", "keep"], horizontal=True, key="export_channels",
                    format_func={"first": "first channel (MonoCut)", "keep": "all channels (MultiCut)"}.get)

preview = preview_export(db_cursor(), k=int(k), rank_by=rank_by, min_duration_s=float(window[0]),
                         max_duration_s=float(window[1]), drop_out_of_window=drop_out_of_window,
                         matrix=tag_matrix())
m = st.columns(4)
m[0].metric("Labels", f"{len(preview.vocabulary):,}")
m[1].metric("Clips kept", f"{preview.clips_kept:,}", help=f"of {preview.clips:,} clips in the corpus")
m[2].metric("Clips left out", f"{preview.clips - preview.clips_kept:,}")
m[3].metric("Vocabulary version", f"decision #{preview.last_decision_id}")
if preview.left_out:
    st.markdown("**Left out:** " + "; ".join(f"{n:,} clips {why}" for why, n in preview.left_out.items()))
else:
    st.markdown("**Left out:** nothing.")
if preview.out_of_window_kept:
    st.caption(f"{preview.out_of_window_kept:,} kept clips are outside the window (kept and counted; the recipe "
               "drops them when it loads the cuts).")
with st.expander(f"The {len(preview.vocabulary):,} labels (label index, tag, clips)"):
    st.dataframe(pd.DataFrame({"index": range(len(preview.vocabulary)), "tag": preview.vocabulary,
                               "clips": preview.vocabulary_df}), hide_index=True, width="stretch",
                 key="export_labels")

stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
default_dir = default_exports_root(db_cursor()) / f"k{preview.k}-d{preview.last_decision_id}-{rank_by}-{stamp}"
out_dir = st.text_input("Write to folder", value=str(default_dir),
                        key=f"export_out_dir_{preview.k}_{rank_by}_{preview.last_decision_id}")
if st.button(f"Write the export (K={preview.k:,})", type="primary", key="export_write",
             disabled=not can("export") or preview.clips_kept == 0):
    name = require_name()
    if name is not None:
        try:
            with st.spinner("Writing label file and cuts..."):
                record = export_vocabulary(db_cursor(), k=preview.k, out_dir=Path(out_dir), by=name, rank_by=rank_by,
                                           channels=channels, min_duration_s=float(window[0]),
                                           max_duration_s=float(window[1]), drop_out_of_window=drop_out_of_window)
            st.session_state["export_pick"] = record.export_id
            # A fresh folder name for the next export at the same K.
            st.session_state.pop(f"export_out_dir_{preview.k}_{rank_by}_{preview.last_decision_id}", None)
            flash(record.as_text())
            st.rerun()
        except UtsError as exc:
            st.error(str(exc))

st.subheader("Exports")
exports = exports_with_runs(db_cursor())
if exports.empty:
    st.caption("No exports yet.")
    st.stop()
st.dataframe(exports[["export_id", "created_at", "created_by", "k", "ranking", "last_decision_id", "content_hash",
                      "vocabulary_size", "clips_kept", "clips_dropped", "runs", "out_dir"]],
             hide_index=True, width="stretch", key="exports_table",
             column_config={"export_id": st.column_config.NumberColumn("#", width="small"),
                            "created_at": st.column_config.DatetimeColumn("Written", format="YYYY-MM-DD HH:mm"),
                            "created_by": "By", "k": "K", "ranking": "Ranking",
                            "last_decision_id": st.column_config.NumberColumn("Decisions up to #"),
                            "content_hash": st.column_config.TextColumn("Content hash", width="small"),
                            "vocabulary_size": "Labels", "clips_kept": "Clips kept", "clips_dropped": "Left out",
                            "runs": st.column_config.TextColumn("Runs trained on it", width="medium"),
                            "out_dir": "Folder"})
labels = {int(r.export_id): f"#{r.export_id}: K={r.k:,}, {r.ranking}, decisions up to #{r.last_decision_id}, "
                            f"hash {str(r.content_hash)[:10]}" for r in exports.itertuples()}
picked = st.selectbox("Download the files of", list(labels), format_func=labels.get, key="export_pick")
row = exports[exports["export_id"] == picked].iloc[0]
folder = Path(row["out_dir"])
files = [(f"label_{int(row['k'])}.json", "application/json"), (f"label_{int(row['k'])}.txt", "text/plain"),
         ("cuts.jsonl.gz", "application/gzip")]
cols = st.columns(len(files))
for col, (file_name, mime) in zip(cols, files):
    path = folder / file_name
    if path.is_file():
        col.download_button(file_name, data=path.read_bytes(), file_name=file_name, mime=mime,
                            key=f"download_{picked}_{file_name}", on_click="ignore", icon=":material/download:")
    else:
        col.caption(f"{file_name}: not in {folder} any more")
