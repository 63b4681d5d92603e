"""Model-based audit: the run's encoder disputes the captioner's tags (confident learning on out-of-sample scores).

Place in the flow: a finished run (curation/runs) -> ``python -m training.oos_scores`` (started here as a
subprocess: the library imports no torch) writes RUN_DIR/model_audit/oos_scores.{npz,json} and the (clips x tags)
matrices beside them, every clip of the run's export scored by a head that never saw that clip -> (this module,
which memory-maps the matrices and works through them in row blocks) per-tag confident-learning thresholds, suspects
and the model's estimate of the captioner's precision -> store/model_audit.py -> ``python -m curation model-audit``
(and, beside an audit campaign, ``precision_comparison``).

The method is confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels", JAIR 2021; cleanlab's multi-label ``find_label_issues`` treats each tag as its own binary problem). It is
written here, not imported: cleanlab is AGPL-3.0. Per tag j, with p = P(tag j | clip) out of sample:

- t_asserted[j] = mean p over the clips the captioner tagged j; t_omitted[j] = mean (1 - p) over the others
  (per-class average self-confidence: a rare tag's thresholds sit where its own scores sit, so frequent and rare
  tags compare fairly);
- hallucinations are found with p from a second head that also saw the caption's other tags and scores with them
  held at their mean (``context="discount"``, the default: a hallucination driven by the caption's context, "reverb"
  because "music", is otherwise learned from the audio of that context and agreed with; training.oos_scores
  CONTEXT_MODES), misses with p = P(tag | audio) from the first head: each kind is confident learning on one
  model's probabilities, with that model's thresholds;
- a tag asserted on a clip is a suspected **hallucination** when 1 - p >= t_omitted[j] and the clip is not at
  least as confidently "asserted" (p >= t_asserted[j] with p > 1 - p); a tag not asserted is a suspected **miss**
  when p >= t_asserted[j] and not as confidently "omitted". This is the binary confident joint's off-diagonal;
- a suspect's score is 1 - self-confidence (1 - p for a hallucination, p for a miss: the out-of-sample probability
  that the captioner's assertion or omission is wrong; cleanlab's default "self_confidence" ranking);
- the captioner's precision on tag j as the model sees it: 1 - hallucinations / asserted (the confident joint's
  estimate), beside the mean p over asserted clips.

What it can find, and what it cannot (measured in bench/model_audit_eval.py, README "Model-based audit"): a bias
that fires at random on a minority of the clips where it applies (e.g. "reverb" asserted on some dry music) leaves
the audio unexplained by the label, and the cross-fitted head disputes it; a systematic bias (a child's voice
always called "female") is learned from the biased labels themselves, and the model agrees with the captioner.

Example::

    audit = run_model_audit(con, "r1", folds=5)
    audit.suspects.head()          # clip_id, tag, kind, score, best first
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from curation import store
from curation.errors import UtsError
from curation.store import model_audit as store_model_audit
from curation.store import runs as store_runs

FEATURE_KINDS = ("encoder", "fbank", "both")
FBANK_STATS = ("moments", "dynamics", "decay", "fine-decay")  # training.oos_scores.FBANK_STATS (no training import)
DEFAULT_FBANK_STATS = "fine-decay"      # training.oos_scores.DEFAULT_FBANK_STATS
REPEATS = 3                             # training.oos_scores.REPEATS: cross-fits averaged over fold seeds
SCORES_DIR = "model_audit"
SCORES_FILE = "oos_scores.npz"
SCORES_MATRIX = "oos_scores.scores.npy"     # training.oos_scores.SCORES_MATRIX (float32, clips x tags)
TARGETS_MATRIX = "oos_scores.targets.npy"   # training.oos_scores.TARGETS_MATRIX (uint8 0/1)
DISPUTES_MATRIX = "oos_scores.disputes.npy"  # training.oos_scores.DISPUTES_MATRIX (float32, optional)
CONTEXT_MODES = ("discount", "none")        # training.oos_scores.CONTEXT_MODES
DEFAULT_CONTEXT = "discount"                # training.oos_scores.DEFAULT_CONTEXT
META_FILE = "oos_scores.json"
# The audit works through the scores in blocks of this many clips (x all tags): thresholds in one pass, suspects
# and stored pairs in a second, so its memory is a few blocks, not the matrix (a real corpus: 360k x 3,000).
ROW_BLOCK_CELLS = 4_000_000
# Unasserted (clip, tag) pairs below this out-of-sample probability are not stored in DuckDB (counted; they stay in
# the run's scores matrix, SCORES_MATRIX). Suspects are always stored.
MIN_STORED_PROBABILITY = 0.05
KINDS = ("hallucination", "miss")


class ModelAuditError(UtsError, ValueError):
    """A model-based audit cannot run: unknown or unfinished run, missing export, unreadable scores file."""


@dataclass(frozen=True)
class OosScores:
    clip_ids: list[str]
    labels: list[str]        # tag per column (the export's label map, id order)
    scores: np.ndarray       # (clips, tags) float: out-of-sample P(tag | clip)
    targets: np.ndarray      # (clips, tags) bool: the captioner asserted the tag (the export's labels)
    folds: np.ndarray        # (clips,) the fold each clip was held out in
    meta: dict               # oos_scores.json: run, export, features, folds, method, seconds
    disputes: np.ndarray | None = None  # (clips, tags) float: the context head's P (``context="discount"``)

    @property
    def dispute_scores(self) -> np.ndarray:
        """The probabilities hallucinations are found with: the context head's where the scores were made with
        ``context="discount"``, else ``scores`` (misses are always found with ``scores``)."""
        return self.scores if self.disputes is None else self.disputes


@dataclass(frozen=True)
class ModelAudit:
    run_id: str
    meta: dict
    suspects: pd.DataFrame   # clip_id, tag, kind, score, best first
    tags: pd.DataFrame       # per tag: thresholds, counts, estimated precision
    unknown_clips: int       # export clips the database does not hold (scored, not stored)
    reused_scores: bool      # the run's oos_scores were already there with the same settings


# ------------------------------------------------------------------------------------------- confident learning

def _matrix(values) -> np.ndarray:
    """An ndarray as given (a memory map stays one); lists and the like become arrays."""
    return values if isinstance(values, np.ndarray) else np.asarray(values)


def confident_thresholds(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per tag: (t_asserted, t_omitted) = mean p over asserted clips, mean (1 - p) over the others; NaN where a
    tag has no asserted (or no unasserted) clip, so that nothing is flagged against an undefined threshold. One
    pass over the rows in blocks (a memory-mapped matrix is never loaded whole)."""
    t_asserted, t_omitted, _ = _thresholds_and_counts(scores, targets)
    return t_asserted, t_omitted


def _thresholds_and_counts(scores, targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t_asserted, t_omitted, clips asserting each tag), from the same pass over the row blocks."""
    scores, targets = _matrix(scores), _matrix(targets)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ModelAuditError(f"scores {scores.shape} and targets {targets.shape}: expected two matrices of the same "
                              "(clips, tags) shape")
    n, k = scores.shape
    sum_asserted, sum_omitted = np.zeros(k), np.zeros(k)
    n_pos = np.zeros(k, dtype=np.int64)
    for block in row_blocks(n, k):
        p = np.asarray(scores[block], dtype=np.float64)
        y = np.asarray(targets[block], dtype=bool)
        sum_asserted += np.where(y, p, 0.0).sum(0)
        sum_omitted += np.where(y, 0.0, 1.0 - p).sum(0)
        n_pos += y.sum(0)
    n_neg = n - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        t_asserted = np.where(n_pos > 0, sum_asserted / n_pos, np.nan)
        t_omitted = np.where(n_neg > 0, sum_omitted / n_neg, np.nan)
    return t_asserted, t_omitted, n_pos


def asserted_counts(targets: np.ndarray) -> np.ndarray:
    """Clips asserting each tag, summed in row blocks (no bool copy of a whole memory-mapped matrix)."""
    targets = _matrix(targets)
    counts = np.zeros(targets.shape[1], dtype=np.int64)
    for block in row_blocks(*targets.shape):
        counts += np.asarray(targets[block], dtype=bool).sum(0)
    return counts


def suspect_mask(scores: np.ndarray, targets: np.ndarray, t_asserted: np.ndarray,
                 t_omitted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hallucination, miss) boolean matrices: the off-diagonal of each tag's binary confident joint (of the rows
    given: callers with a large matrix pass one row block at a time)."""
    p = np.asarray(scores, dtype=np.float64)
    asserted = np.asarray(targets, dtype=bool)
    with np.errstate(invalid="ignore"):
        confident_yes = p >= t_asserted[None, :]
        confident_no = (1 - p) >= t_omitted[None, :]
    hallucination = asserted & confident_no & (~confident_yes | ((1 - p) > p))
    miss = ~asserted & confident_yes & (~confident_no | (p > (1 - p)))
    return hallucination, miss


@dataclass(frozen=True)
class SuspectCells:
    """The suspects as cells of the (clips x tags) matrix, best first: row, column, is_hallucination, score."""
    rows: np.ndarray
    cols: np.ndarray
    hallucination: np.ndarray
    score: np.ndarray

    def frame(self, clip_ids: list[str], labels: list[str]) -> pd.DataFrame:
        return pd.DataFrame({
            "clip_id": np.asarray(clip_ids, dtype=object)[self.rows] if len(clip_ids) else [],
            "tag": np.asarray(labels, dtype=object)[self.cols] if len(labels) else [],
            "kind": np.where(self.hallucination, "hallucination", "miss").astype(object),
            "score": self.score.astype(np.float64)})


def suspect_cells(scores: np.ndarray, targets: np.ndarray, clip_ids: list[str], labels: list[str],
                  thresholds: tuple[np.ndarray, np.ndarray] | None = None, on_block=None, *,
                  disputes: np.ndarray | None = None,
                  dispute_thresholds: tuple[np.ndarray, np.ndarray] | None = None) -> SuspectCells:
    """Every suspected hallucination and miss, best first (score descending; ties by tag then clip id, so the
    order is reproducible), found block by block. ``disputes``: the probabilities hallucinations are found with
    (confident learning on them, with ``dispute_thresholds``; OosScores.disputes), misses always with ``scores``;
    without it both with ``scores``. ``on_block(block, p, y, hallucination, miss)`` sees each row block as it goes
    (the audit stores its pairs from there, without a second pass), p = the probability each cell was judged by."""
    n, k = scores.shape
    t_asserted, t_omitted = thresholds if thresholds is not None else confident_thresholds(scores, targets)
    if disputes is not None and dispute_thresholds is None:
        dispute_thresholds = confident_thresholds(disputes, targets)
    parts = []
    for block in row_blocks(n, k):
        p = np.asarray(scores[block], dtype=np.float64)
        y = np.asarray(targets[block], dtype=bool)
        hallucination, miss = suspect_mask(p, y, t_asserted, t_omitted)
        if disputes is not None:
            q = np.asarray(disputes[block], dtype=np.float64)
            hallucination = suspect_mask(q, y, *dispute_thresholds)[0]
            p = np.where(y, q, p)
        for mask, is_h in ((hallucination, True), (miss, False)):
            r, c = np.nonzero(mask)
            parts.append((r + block.start, c, np.full(len(r), is_h), 1 - p[r, c] if is_h else p[r, c]))
        if on_block is not None:
            on_block(block, p, y, hallucination, miss)
    rows = np.concatenate([q[0] for q in parts]) if parts else np.zeros(0, dtype=np.int64)
    cols = np.concatenate([q[1] for q in parts]) if parts else np.zeros(0, dtype=np.int64)
    is_h = np.concatenate([q[2] for q in parts]) if parts else np.zeros(0, dtype=bool)
    score = np.concatenate([q[3] for q in parts]) if parts else np.zeros(0)
    # Integer sort keys instead of sorting strings: the rank of each tag name and clip id in sorted order.
    tag_rank = np.argsort(np.argsort(np.asarray(labels, dtype=str), kind="stable"), kind="stable")
    clip_rank = np.argsort(np.argsort(np.asarray(clip_ids, dtype=str), kind="stable"), kind="stable")
    order = np.lexsort((clip_rank[rows] if len(rows) else rows, tag_rank[cols] if len(cols) else cols, -score))
    return SuspectCells(rows[order], cols[order], is_h[order], score[order])


def find_suspects(scores: np.ndarray, targets: np.ndarray, clip_ids: list[str], labels: list[str]) -> pd.DataFrame:
    """clip_id, tag, kind, score of every suspected hallucination and miss, best first (score descending; ties
    by tag then clip id, so the order is reproducible)."""
    # suspect_cells' thresholds refuse matrices of different shapes.
    scores, targets = _matrix(scores), _matrix(targets)
    return suspect_cells(scores, targets, clip_ids, labels).frame(clip_ids, labels)


def _tag_frame(labels: list[str], n_clips: int, asserted: np.ndarray, t_asserted: np.ndarray,
               t_omitted: np.ndarray, hallucinations: np.ndarray, misses: np.ndarray, *,
               mean_asserted: np.ndarray | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({
        "tag": labels, "asserted": asserted.astype(int), "omitted": (n_clips - asserted).astype(int),
        "threshold_asserted": t_asserted, "threshold_omitted": t_omitted,
        "hallucinations": hallucinations.astype(int), "misses": misses.astype(int),
        "mean_probability_asserted": t_asserted if mean_asserted is None else mean_asserted,
    })
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["estimated_precision"] = np.where(asserted > 0, 1 - frame["hallucinations"] / np.maximum(asserted, 1),
                                                np.nan)
    return frame


def tag_estimates(scores: np.ndarray, targets: np.ndarray, labels: list[str], suspects: pd.DataFrame) -> pd.DataFrame:
    """Per tag: asserted / omitted clips, both thresholds, hallucinations and misses flagged, the mean
    out-of-sample p over asserted clips, and estimated_precision = 1 - hallucinations / asserted."""
    t_asserted, t_omitted, asserted = _thresholds_and_counts(scores, targets)
    counts = suspects.groupby(["tag", "kind"]).size().unstack(fill_value=0) if not suspects.empty else pd.DataFrame()
    hall = counts["hallucination"] if "hallucination" in counts else pd.Series(dtype=int)
    miss = counts["miss"] if "miss" in counts else pd.Series(dtype=int)
    return _tag_frame(labels, len(targets), asserted, t_asserted, t_omitted,
                      np.array([int(hall.get(t, 0)) for t in labels]), np.array([int(miss.get(t, 0)) for t in labels]))


# ------------------------------------------------------------------------------------------ scores of a run

def scores_path(run_dir: Path) -> Path:
    return Path(run_dir) / SCORES_DIR / SCORES_FILE


def read_oos_scores(run_dir: Path) -> OosScores:
    """Read RUN_DIR/model_audit/oos_scores.{npz,json} and the matrices beside them, and check that they agree.

    The (clips x tags) matrices are memory-mapped read-only (``scores`` float32, ``targets`` a bool view), not
    loaded: callers take row blocks (``row_blocks``) or columns. Files of the first format (everything inside
    the npz) are still read, whole."""
    path = scores_path(run_dir)
    meta_path = path.with_name(META_FILE)
    if not path.is_file() or not meta_path.is_file():
        raise ModelAuditError(f"{path}: no out-of-sample scores; expected the files python -m training.oos_scores "
                              f"writes (run: python -m training.oos_scores --run {run_dir})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("clip_ids", "labels", "folds")}
            inline = "scores" in data.files
            if inline:
                arrays["scores"], arrays["targets"] = data["scores"], data["targets"]
        if not inline:
            arrays["scores"] = np.load(path.with_name(SCORES_MATRIX), mmap_mode="r", allow_pickle=False)
            arrays["targets"] = np.load(path.with_name(TARGETS_MATRIX), mmap_mode="r", allow_pickle=False)
            if meta.get("disputes_matrix"):
                arrays["disputes"] = np.load(path.with_name(DISPUTES_MATRIX), mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelAuditError(f"{path}: unreadable out-of-sample scores ({type(exc).__name__}: {exc}); expected "
                              f"arrays clip_ids, labels, folds and the matrices {SCORES_MATRIX}, {TARGETS_MATRIX} "
                              f"(and {DISPUTES_MATRIX} where oos_scores.json says so) beside it (recompute with "
                              "--recompute)") from None
    n, k = len(arrays["clip_ids"]), len(arrays["labels"])
    for name in ("scores", "targets", "disputes"):
        if name not in arrays:
            continue
        if arrays[name].shape != (n, k):
            raise ModelAuditError(f"{path}: field '{name}' has shape {arrays[name].shape}; expected ({n}, {k}) "
                                  "(clips x tags); recompute with --recompute")
    scores = arrays["scores"] if not inline else arrays["scores"].astype(np.float32)
    disputes = arrays.get("disputes")
    if (scores.dtype != np.float32 or arrays["targets"].dtype not in (np.uint8, np.bool_)
            or (disputes is not None and disputes.dtype != np.float32)):
        raise ModelAuditError(f"{path}: scores {scores.dtype}, targets {arrays['targets'].dtype}"
                              + (f", disputes {disputes.dtype}" if disputes is not None else "")
                              + "; expected float32 probabilities and 0/1 uint8 targets (recompute with --recompute)")
    targets = arrays["targets"]
    # One pass in row blocks (the matrices may be larger than memory): every score a probability, every target 0/1.
    for block in row_blocks(n, k):
        for name, matrix in (("scores", scores), ("disputes", disputes)):
            values = matrix[block] if matrix is not None else np.zeros(0)
            if values.size and (not np.isfinite(values).all() or values.min() < 0 or values.max() > 1):
                raise ModelAuditError(f"{path}: field '{name}' holds values outside [0, 1] (clips {block.start}-"
                                      f"{block.stop - 1}); expected probabilities")
        if targets.dtype == np.uint8 and targets[block].size and targets[block].max() > 1:
            raise ModelAuditError(f"{path}: field 'targets' holds values other than 0 and 1 (clips {block.start}-"
                                  f"{block.stop - 1}); expected 0/1 per clip and tag")
    targets = targets.view(np.bool_) if targets.dtype == np.uint8 else targets
    return OosScores([str(c) for c in arrays["clip_ids"]], [str(t) for t in arrays["labels"]], scores, targets,
                     arrays["folds"].astype(int), {**meta, "scores_file": str(path)}, disputes)


def row_blocks(n_clips: int, n_tags: int, cells: int | None = None) -> list[slice]:
    """Consecutive row slices of at most ``cells`` (default ROW_BLOCK_CELLS) (clip, tag) cells each (at least one
    row)."""
    step = max(1, (ROW_BLOCK_CELLS if cells is None else cells) // max(n_tags, 1))
    return [slice(start, min(n_clips, start + step)) for start in range(0, n_clips, step)]


def compute_oos_scores(run_dir: Path, *, folds: int, features: str = "both", device: str = "cpu",
                       python: str | None = None, fbank_stats: str = DEFAULT_FBANK_STATS,
                       repeats: int = REPEATS, context: str = DEFAULT_CONTEXT) -> dict:
    """Run ``python -m training.oos_scores`` on the run directory (torch stays out of this process)."""
    command = [python or sys.executable, "-m", "training.oos_scores", "--run", str(run_dir), "--folds", str(folds),
               "--features", features, "--device", device, "--fbank-stats", fbank_stats, "--repeats", str(repeats),
               "--context", context]
    result = subprocess.run(command, cwd=store.PROJECT_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise ModelAuditError(f"{run_dir}: computing out-of-sample scores failed (exit {result.returncode}): {tail}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _scores_current(run_dir: Path, folds: int, features: str, fbank_stats: str = DEFAULT_FBANK_STATS,
                    repeats: int = REPEATS, context: str = DEFAULT_CONTEXT) -> bool:
    meta_path = scores_path(run_dir).with_name(META_FILE)
    if not scores_path(run_dir).is_file() or not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if meta.get("folds") != folds or meta.get("features") != features:
        return False
    # Scores written before these settings existed were moments-only, single cross-fits.
    if meta.get("repeats", 1) != repeats or (features != "encoder"
                                             and meta.get("fbank_stats", "moments") != fbank_stats):
        return False
    # Scores written before the context discount existed judged asserted tags by the audio head alone.
    if meta.get("context", "none") != context:
        return False
    checkpoint = Path(run_dir) / "checkpoints" / "last.pt"
    # Scores made from an older checkpoint of this run (it was resumed and trained on) are stale.
    return features == "fbank" or not checkpoint.is_file() or checkpoint.stat().st_mtime <= meta_path.stat().st_mtime


def scores_written(run_dir: str | Path, folds: int, *, features: str = "both") -> bool:
    """Whether the run directory holds current out-of-sample scores for these settings (the defaults: what a job
    launched with model-audit folds writes), so that ``run_model_audit`` will reuse them."""
    return _scores_current(Path(run_dir), folds, features)


def _run_dir(con: duckdb.DuckDBPyConnection, run_id: str) -> Path:
    run = store_runs.get_run(con, run_id)
    if run is None:
        known = store_runs.runs_frame(con)["run_id"].tolist()
        raise ModelAuditError(f"--run {run_id}: no such run; known runs: {', '.join(known[:10]) or 'none'} "
                              "(import a run directory with python -m curation runs import RUN_DIR)")
    if run["state"] != "finished":
        raise ModelAuditError(f"--run {run_id}: the run is {run['state']}; expected a finished run (its final "
                              "checkpoint is what scores the clips)")
    run_dir = Path(run["run_dir"])
    if not (run_dir / "config.json").is_file():
        raise ModelAuditError(f"{run_dir}: the run directory of {run_id} is not here (no config.json); expected "
                              "the folder the run wrote")
    return run_dir


def run_model_audit(con: duckdb.DuckDBPyConnection, run_id: str, *, folds: int = 5, features: str = "both",
                    device: str = "cpu", recompute: bool = False, fbank_stats: str = DEFAULT_FBANK_STATS,
                    repeats: int = REPEATS, context: str = DEFAULT_CONTEXT) -> ModelAudit:
    """Score (or reuse the scores of) a finished run, find suspects, store everything for the run (replacing a
    previous audit of it, in one transaction) and return them."""
    if folds < 2:
        raise ModelAuditError(f"--folds {folds}: expected at least 2 (each clip is scored by a head fitted without it)")
    if features not in FEATURE_KINDS:
        raise ModelAuditError(f"--features {features}: expected one of {', '.join(FEATURE_KINDS)}")
    if fbank_stats not in FBANK_STATS:
        raise ModelAuditError(f"--fbank-stats {fbank_stats}: expected one of {', '.join(FBANK_STATS)}")
    if repeats < 1:
        raise ModelAuditError(f"--repeats {repeats}: expected at least 1")
    if context not in CONTEXT_MODES:
        raise ModelAuditError(f"--context {context}: expected one of {', '.join(CONTEXT_MODES)}")
    run_dir = _run_dir(con, run_id)
    reused = not recompute and _scores_current(run_dir, folds, features, fbank_stats, repeats, context)
    if not reused:
        compute_oos_scores(run_dir, folds=folds, features=features, device=device, fbank_stats=fbank_stats,
                           repeats=repeats, context=context)
    oos = read_oos_scores(run_dir)
    return store_audit_of(con, run_id, oos, reused=reused)


def store_audit_of(con: duckdb.DuckDBPyConnection, run_id: str, oos: OosScores, *, reused: bool = False) -> ModelAudit:
    """Suspects and per-tag estimates from ``oos``, stored for ``run_id`` (one transaction).

    Two passes over the scores in row blocks (the thresholds need every row first), so a memory-mapped matrix of
    a real corpus is never held whole: the second pass finds each block's suspects and inserts its stored pairs
    (every asserted pair, every suspect, and unasserted pairs from MIN_STORED_PROBABILITY up)."""
    n, k = len(oos.clip_ids), len(oos.labels)
    *thresholds, asserted = _thresholds_and_counts(oos.scores, oos.targets)
    # Hallucinations are confident learning on the context head's probabilities (its own thresholds), misses on
    # the audio head's (training.oos_scores CONTEXT_MODES).
    dispute_thresholds = (tuple(_thresholds_and_counts(oos.disputes, oos.targets)[:2]) if oos.disputes is not None
                          else tuple(thresholds))
    keys = store_model_audit.clip_keys(con, oos.clip_ids)
    key_of_row = (pd.DataFrame({"clip_id": oos.clip_ids}).merge(keys, on="clip_id", how="left")["clip_key"]
                  .fillna(-1).to_numpy(dtype=np.int64))
    known = key_of_row >= 0
    unknown = int(n - known.sum())
    labels = pa.array(oos.labels, pa.string())
    counts = {"stored_pairs": 0}
    folds = np.asarray(oos.folds, dtype=np.int32)

    def store_block(block: slice, p: np.ndarray, y: np.ndarray, hallucination: np.ndarray, miss: np.ndarray) -> None:
        keep = (y | (p >= MIN_STORED_PROBABILITY) | hallucination | miss) & known[block][:, None]
        rows, cols = np.nonzero(keep)
        if not len(rows):
            return
        counts["stored_pairs"] += len(rows)
        store_model_audit.insert_rows(con, "model_audit_scores", run_id, pa.table({
            "clip_key": key_of_row[block][rows],
            "tag": pa.DictionaryArray.from_arrays(pa.array(cols.astype(np.int32)), labels),
            "asserted": y[rows, cols], "probability": p[rows, cols], "fold": folds[block][rows]}))

    with store.transaction(con):
        store_model_audit.delete_audit(con, run_id)
        cells = suspect_cells(oos.scores, oos.targets, oos.clip_ids, oos.labels, tuple(thresholds),
                              on_block=store_block, disputes=oos.disputes, dispute_thresholds=dispute_thresholds)
        hallucinations = np.bincount(cells.cols[cells.hallucination], minlength=k)
        misses = np.bincount(cells.cols[~cells.hallucination], minlength=k)
        # The threshold each kind of suspect must pass: a miss's p the audio head's t_asserted, a hallucination's
        # 1 - p the context head's t_omitted; the mean p over asserted clips is the one hallucinations are judged by.
        tags = _tag_frame(oos.labels, n, asserted, thresholds[0], dispute_thresholds[1], hallucinations, misses,
                          mean_asserted=dispute_thresholds[0])
        stored = known[cells.rows]
        cells = SuspectCells(cells.rows[stored], cells.cols[stored], cells.hallucination[stored], cells.score[stored])
        store_model_audit.insert_rows(con, "model_audit_suspects", run_id, pa.table({
            "clip_key": key_of_row[cells.rows],
            "tag": pa.DictionaryArray.from_arrays(pa.array(cells.cols.astype(np.int32)), labels),
            "kind": np.where(cells.hallucination, "hallucination", "miss"), "score": cells.score,
            "rank": np.arange(1, len(cells.rows) + 1, dtype=np.int64)}))
        store_model_audit.insert_rows(con, "model_audit_tags", run_id, pa.Table.from_pandas(tags,
                                                                                            preserve_index=False))
        audit = {"folds": int(oos.meta.get("folds", 0)), "features": str(oos.meta.get("features", "")),
                 "method": str(oos.meta.get("method", "")) + (
                     f"; log-mel {oos.meta['fbank_stats']}" if oos.meta.get("fbank_stats") else "")
                 + f"; repeats={oos.meta.get('repeats', 1)}; context={oos.meta.get('context', 'none')}",
                 "scores_file": str(oos.meta.get("scores_file", "")),
                 "n_clips": n, "n_tags": k, "stored_pairs": counts["stored_pairs"],
                 "omitted_pairs": int(known.sum()) * k - counts["stored_pairs"],
                 "min_stored_probability": MIN_STORED_PROBABILITY, "unknown_clips": unknown,
                 "seconds": oos.meta.get("seconds")}
        store_model_audit.insert_audit_row(con, run_id, audit)
    return ModelAudit(run_id=run_id, meta=oos.meta, suspects=cells.frame(oos.clip_ids, oos.labels),
                      tags=tags, unknown_clips=unknown, reused_scores=reused)


def suspects_records(suspects: pd.DataFrame, limit: int | None = None) -> list[dict]:
    """The CLI contract: [{"clip_id", "tag", "kind", "score"}] best first."""
    frame = suspects if limit is None else suspects.head(limit)
    return [{"clip_id": str(r.clip_id), "tag": str(r.tag), "kind": str(r.kind), "score": round(float(r.score), 6)}
            for r in frame.itertuples(index=False)]


def precision_comparison(con: duckdb.DuckDBPyConnection, run_id: str, campaign: str | int,
                         precision: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per tag: the model's estimate of the captioner's precision beside the audited precision and its Wilson
    interval (curation/audit/stats.py), and whether the estimate lies inside the interval (agrees). Tags the
    campaign did not judge keep NaN audit columns (agrees: None). ``precision``: the campaign report's per-tag
    precision when the caller has it already (the dashboard), else it is computed."""
    from curation.audit.report import campaign_report

    tags = store_model_audit.tags_frame(con, run_id)
    if tags.empty:
        raise ModelAuditError(f"--run {run_id}: no model audit stored; run python -m curation model-audit --run "
                              f"{run_id} first")
    if precision is None:
        precision = campaign_report(con, campaign).precision
    merged = tags[["tag", "asserted", "hallucinations", "estimated_precision", "mean_probability_asserted"]].merge(
        precision[["tag", "judged", "precision", "precision_low", "precision_high"]], on="tag", how="left")
    merged = merged.rename(columns={"precision": "audited_precision"})
    judged = merged["judged"].fillna(0) > 0
    merged["agrees"] = np.where(judged, (merged["estimated_precision"] >= merged["precision_low"])
                                & (merged["estimated_precision"] <= merged["precision_high"]), None)
    return merged


# ------------------------------------------------------------------------ evaluation against a known truth (demo)

def _ranked_metrics(scores: np.ndarray, truth: np.ndarray, flagged: np.ndarray, n: int) -> dict:
    """Precision / recall at n of a score ranking (ties broken by position, i.e. stable), of the flagged set,
    and what a random order gives in expectation."""
    candidates = len(scores)
    planted = int(truth.sum())
    order = np.argsort(-scores, kind="stable")
    n = min(n, candidates)
    hits = int(truth[order[:n]].sum())
    n_flagged = int(flagged.sum())
    flagged_hits = int((flagged & truth).sum())
    prevalence = planted / candidates if candidates else float("nan")
    return {"candidates": candidates, "planted": planted, "n": n,
            "precision_at_n": hits / n if n else float("nan"),
            "recall_at_n": hits / planted if planted else float("nan"),
            "random_precision_at_n": prevalence,
            "random_recall_at_n": n / candidates if candidates else float("nan"),
            "flagged": n_flagged, "flagged_precision": flagged_hits / n_flagged if n_flagged else float("nan"),
            "flagged_recall": flagged_hits / planted if planted else float("nan")}


def evaluate_planted_biases(oos: OosScores, truth_rows, biases, concept_of_tag, n: int | None = None) -> pd.DataFrame:
    """For each planted captioner bias (``biases``: objects with name, kind, tag; ``truth_rows``: clip_id,
    true_tags, caption_tags, applied_biases per clip; ``concept_of_tag``: export label -> concept or None), how
    well the out-of-sample scores find the clips it fired on, against a random order of the same candidates.

    A hallucination (or the asserted half of a confusion) of concept C is looked for among the clips whose
    export labels assert C, ranked by 1 - p (max over C's labels) and flagged when any of C's labels is a
    confident-learning hallucination suspect; an omission (or the dropped half of a confusion: 'child' for
    child_called_female, 'siren' for siren_called_alarm) among the clips that do not assert C, ranked by p.
    ``n``: the cut-off (default: the number of planted cases, where precision = recall). Concepts the export's
    labels do not cover are reported with 0 candidates."""
    truth = {str(r[0]): (set(r[1]), set(r[3])) for r in truth_rows}
    rows = [i for i, c in enumerate(oos.clip_ids) if c in truth]
    # A demo's matrices: small enough to hold whole. Hallucinations ranked and flagged by the probabilities the
    # audit judges asserted tags by (the context head's, where the scores have it), misses by the audio head's.
    scores, judged = np.asarray(oos.scores), np.asarray(oos.dispute_scores)
    miss = suspect_mask(scores, oos.targets, *confident_thresholds(scores, oos.targets))[1]
    hallucination = suspect_mask(judged, oos.targets, *confident_thresholds(judged, oos.targets))[0]
    concepts = [concept_of_tag(t) for t in oos.labels]
    # The concept a confusion drops (its true concept), from the bias's own description of the swap.
    dropped = {"child_called_female": "child", "siren_called_alarm": "siren"}
    out = []
    for bias in biases:
        looks = [(bias.tag, "hallucination" if bias.kind in ("hallucination", "confusion") else "miss")]
        if bias.name in dropped:
            looks.append((dropped[bias.name], "miss"))
        for concept, kind in looks:
            cols = [j for j, c in enumerate(concepts) if c == concept]
            record = {"bias": bias.name, "bias_kind": bias.kind, "concept": concept, "looked_for": kind,
                      "labels": ",".join(oos.labels[j] for j in cols)}
            if not cols:
                out.append({**record, **_ranked_metrics(np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), 0)})
                continue
            asserted = oos.targets[np.ix_(rows, cols)].any(1)
            fired = np.array([bias.name in truth[oos.clip_ids[i]][1] for i in rows])
            if kind == "hallucination":
                keep = asserted
                score = (1 - np.where(oos.targets[np.ix_(rows, cols)], judged[np.ix_(rows, cols)], 1.0)).max(1)
                flagged = hallucination[np.ix_(rows, cols)].any(1)
                planted = fired & np.array([concept not in truth[oos.clip_ids[i]][0] for i in rows])
            else:
                keep = ~asserted
                score = scores[np.ix_(rows, cols)].max(1)
                flagged = miss[np.ix_(rows, cols)].any(1)
                planted = fired & np.array([concept in truth[oos.clip_ids[i]][0] for i in rows])
            planted_in = planted[keep]
            metrics = _ranked_metrics(score[keep], planted_in, flagged[keep],
                                      n if n is not None else max(int(planted_in.sum()), 1))
            out.append({**record, **metrics})
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------ audits aimed where they matter

def suspects_first_sample(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, sample_size: int, seed: int,
                          run_id: str) -> pd.DataFrame:
    """An audit sample that starts with the clips the model disputes most (in the order of each clip's best
    suspect, so the first clips in the queue are the strongest disputes), then, if the suspects do not fill it,
    a stratified sample of the other clips (``campaigns.stratified_sample``). ``frame``: the campaign's sampling
    frame with its ``stratum`` column; the suspects' stratum is ``model suspect (<run>)``.

    Precision measured on such a sample describes the disputed clips, not the corpus: the campaign's design
    records the strategy so that reports can say so."""
    from curation.audit.campaigns import AuditError, stratified_sample

    if store_model_audit.audit_row(con, run_id) is None:
        raise AuditError(f"run {run_id!r} has no model audit; run python -m curation model-audit --run {run_id} "
                         "first (or choose the stratified strategy)")
    suspects = store_model_audit.suspects_frame(con, run_id)
    ordered_keys = list(dict.fromkeys(int(k) for k in suspects["clip_key"]))
    by_key = frame.set_index("clip_key", drop=False)
    ordered_keys = [k for k in ordered_keys if k in by_key.index][:sample_size]
    first = by_key.loc[ordered_keys].reset_index(drop=True).assign(stratum=f"model suspect ({run_id})")
    rest = frame[~frame["clip_key"].isin(ordered_keys)]
    if len(first) < sample_size and not rest.empty:
        filler = stratified_sample(rest.reset_index(drop=True), sample_size - len(first), seed).drop(
            columns="position")
        first = pd.concat([first, filler], ignore_index=True)
    first["position"] = np.arange(1, len(first) + 1)
    return first
