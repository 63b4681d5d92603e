"""Export a vocabulary: label_K.json / label_K.txt in the published UTS format and the filtered Lhotse cuts.

Place in the flow: vocabulary -> export (this module) -> training (reads only these files). The export names
its parent: the last decision it includes, K, the ranking and a content hash, stored as a row of ``exports``
and in ``export.json`` beside the files.

Example::

    record = export_vocabulary(con, k=800, out_dir=Path("exports/v800"), by="ana")
    # exports/v800/label_800.json, label_800.txt, cuts.jsonl.gz, export.json
"""
from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from curation import store
from curation.admin import permissions
from curation.errors import UsageError
from curation.store import exports as store_exports
from curation.vocabulary.decisions import list_decisions, replay
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix

DEFAULT_SAMPLE_RATE_HZ = 16_000  # the UTS corpus rate; used when a clip's rate is unknown


@dataclass(frozen=True)
class ExportRecord:
    export_id: int
    k: int
    vocabulary_size: int
    rank_by: str
    last_decision_id: int
    content_hash: str
    out_dir: str
    clips_kept: int
    clips_dropped: int
    clips_without_duration: int

    def as_dict(self) -> dict:
        return asdict(self)


def _cut(clip: dict, tags: list[str]) -> dict:
    duration = float(clip["duration_s"])
    rate = int(clip["sample_rate_hz"] or DEFAULT_SAMPLE_RATE_HZ)
    clip_id = clip["clip_id"]
    custom = {"audio_tag": tags, "caption": clip["caption"] or "", "original_caption": list(clip["originals"] or [])}
    if clip["domain"]:
        custom["domain"] = clip["domain"]
    if clip["source"]:
        custom["source"] = clip["source"]
    return {
        "id": clip_id, "start": 0.0, "duration": duration, "channel": 0,
        "supervisions": [{"id": clip_id, "recording_id": clip_id, "start": 0.0, "duration": duration,
                          "channel": 0, "custom": custom}],
        "recording": {"id": clip_id, "sources": [{"type": "file", "channels": [0],
                                                   "source": clip["audio_path"] or clip["source"] or clip_id}],
                      "sampling_rate": rate, "num_samples": int(round(duration * rate)), "duration": duration,
                      "channel_ids": [0]},
        "type": "MonoCut",
    }


def export_vocabulary(con: duckdb.DuckDBPyConnection, *, k: int, out_dir: Path, by: str | None = None,
                      rank_by: str = "tfidf") -> ExportRecord:
    by = permissions.authorize("export", by)
    if k < 1:
        raise UsageError(f"--k {k}: expected a vocabulary size of at least 1")
    state = replay(list_decisions(con))
    view = compute_vocabulary(load_tag_matrix(con), state, rank_by=rank_by)
    if len(view.ranking) == 0:
        raise UsageError("the corpus has no tags to export: ingest tagged clips first")
    labels = view.top_k(k)
    clip_tags = view.clip_tags_at(k)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    label_json = json.dumps({str(i): tag for i, tag in enumerate(labels)}, ensure_ascii=False, indent=1)
    digest.update(label_json.encode())
    kept = without_duration = 0
    tmp_cuts = out_dir / "cuts.jsonl.gz.partial"
    with gzip.GzipFile(tmp_cuts, "wb", mtime=0) as handle:
        for clip in store_exports.export_clip_rows(con):
            tags = clip_tags.get(clip["clip_id"])
            if not tags:
                continue
            if not clip["duration_s"]:
                without_duration += 1  # a cut without a duration cannot be trained on
                continue
            line = (json.dumps(_cut(clip, tags), ensure_ascii=False) + "\n").encode()
            digest.update(line)
            handle.write(line)
            kept += 1
    content_hash = digest.hexdigest()
    # Files appear under their final names only once complete, so a crash never leaves a half export.
    (out_dir / f"label_{k}.json").write_text(label_json, encoding="utf-8")
    (out_dir / f"label_{k}.txt").write_text("".join(tag + "\n" for tag in labels), encoding="utf-8")
    tmp_cuts.replace(out_dir / "cuts.jsonl.gz")
    dropped = view.n_clips - kept
    with store.transaction(con):
        export_id = store_exports.record_export(con, by=by, k=k, rank_by=rank_by, last_decision_id=state.last_decision_id,
                                        content_hash=content_hash, out_dir=str(out_dir.resolve()),
                                        vocabulary_size=len(labels), clips_kept=kept, clips_dropped=dropped)
    record = ExportRecord(export_id=export_id, k=k, vocabulary_size=len(labels), rank_by=rank_by,
                          last_decision_id=state.last_decision_id, content_hash=content_hash,
                          out_dir=str(out_dir.resolve()), clips_kept=kept, clips_dropped=dropped,
                          clips_without_duration=without_duration)
    (out_dir / "export.json").write_text(json.dumps(
        {**record.as_dict(), "created_at": datetime.now(timezone.utc).isoformat(), "created_by": by,
         "label_file": f"label_{k}.json", "cuts_file": "cuts.jsonl.gz"}, indent=1), encoding="utf-8")
    return record
