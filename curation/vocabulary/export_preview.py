"""What an export would hold and leave out, before anything is written (the Export page shows it).

Place in the flow: vocabulary -> (this preview) -> export (curation/vocabulary/export.py writes the files). The
counts follow the export's own rules: a clip is left out when it keeps no tag at K, when it has no duration, and,
when out-of-window clips are dropped, when its duration is outside the window (kept and counted otherwise).

Example::

    preview = preview_export(con, k=800, min_duration_s=1.0, max_duration_s=60.0)
    preview.vocabulary[:5], preview.left_out
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.decisions import list_decisions, replay
from curation.vocabulary.export import DROP_NO_DURATION, DROP_NO_TAG, DROP_OUT_OF_WINDOW
from curation.vocabulary.ranking import TagMatrix, compute_vocabulary, load_tag_matrix


@dataclass(frozen=True)
class ExportPreview:
    k: int
    rank_by: str
    last_decision_id: int
    vocabulary: list[str]  # the K labels, in label-index order
    vocabulary_df: list[int]  # clips per label
    clips: int
    clips_kept: int
    left_out: dict  # reason (the export's wording) -> clips
    out_of_window_kept: int  # kept although outside the window (the UTS recipe drops them when it loads cuts)


def preview_export(con: duckdb.DuckDBPyConnection, *, k: int, rank_by: str = "tfidf",
                   min_duration_s: float = 1.0, max_duration_s: float = 60.0, drop_out_of_window: bool = False,
                   matrix: TagMatrix | None = None) -> ExportPreview:
    state = replay(list_decisions(con))
    view = compute_vocabulary(matrix if matrix is not None else load_tag_matrix(con), state, rank_by=rank_by)
    k = max(1, min(int(k), len(view.ranking))) if len(view.ranking) else int(k)
    durations = store_vocabulary.clip_durations(con)
    duration_of = dict(zip(durations["clip_id"].tolist(), durations["duration_s"].tolist()))
    tagged = view.best_rank <= k
    tagged_durations = np.array([duration_of.get(c, np.nan) for c in view.clip_ids[tagged]], dtype=float)
    no_duration = ~np.isfinite(tagged_durations) | (tagged_durations <= 0)
    outside = ~no_duration & ((tagged_durations < min_duration_s) | (tagged_durations > max_duration_s))
    window = f"[{min_duration_s:g} s, {max_duration_s:g} s]"
    left_out = {DROP_NO_TAG: int((~tagged).sum()), DROP_NO_DURATION: int(no_duration.sum()),
                f"{DROP_OUT_OF_WINDOW} {window}": int(outside.sum()) if drop_out_of_window else 0}
    kept = int(tagged.sum() - no_duration.sum() - (outside.sum() if drop_out_of_window else 0))
    top = view.ranking.iloc[:k]
    return ExportPreview(k=k, rank_by=rank_by, last_decision_id=state.last_decision_id,
                         vocabulary=top["tag"].tolist(), vocabulary_df=[int(d) for d in top["df"]],
                         clips=view.n_clips, clips_kept=kept, left_out={w: n for w, n in left_out.items() if n},
                         out_of_window_kept=0 if drop_out_of_window else int(outside.sum()))
