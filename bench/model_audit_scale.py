"""The model audit at corpus scale: reading a run's out-of-sample scores, finding and storing the suspects, and
the model's merge and prune evidence, for every clip of the ingest benchmark's corpus (360,678 clips) at K tags.

The scoring itself (``python -m training.oos_scores``) belongs on the GPU node where the run trained (the launcher's
``--audit-folds``); what the app's machine then does with its file is what this measures. The file is synthetic but
shaped like a real one: K tags with Zipf-distributed prevalence (the most frequent on ~25% of the clips, the
rarest on ~0.1%), the export's labels drawn from it, and out-of-sample probabilities from a noisy model of those
labels (asserted pairs mostly high, the others mostly low, with overlap), written by the same writer the scorer
uses (``training.oos_scores.write_scores``). Each measured step runs in a child process, so its peak RSS is its
own (and its anonymous part, sampled, without the memory-mapped file's pages): ``store_audit_of`` (what ``model-audit`` does after scoring: thresholds, suspects, per-tag estimates, the
stored pairs) and ``model_evidence`` (``model-evidence``).

    .venv/bin/python bench/model_audit_scale.py [--workdir /tmp/uts_bench] [--tags 800] [--clips N] [--disputes]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "bench"))


def write_synthetic_scores(run_dir: Path, clip_ids: list[str], n_tags: int, seed: int, inline: bool = False,
                           disputes: bool = False) -> dict:
    """``disputes``: also a context head's matrix (the scores' logits with noise of their own), as the scorer writes
    with ``--context discount``."""
    from training.oos_scores import write_scores

    rng = np.random.default_rng(seed)
    n = len(clip_ids)
    prevalence = np.clip(0.25 / np.arange(1, n_tags + 1) ** 0.8, 0.001, None)
    labels = [f"tag{j:05d}" for j in range(n_tags)]
    targets = np.empty((n, n_tags), dtype=np.uint8)
    scores = np.empty((n, n_tags), dtype=np.float32)
    context = np.empty((n, n_tags), dtype=np.float32) if disputes else None
    logit_prior = np.log(prevalence / (1 - prevalence)).astype(np.float32)
    for start in range(0, n, 20_000):
        stop = min(n, start + 20_000)
        y = rng.random((stop - start, n_tags), dtype=np.float32) < prevalence[None, :]
        # A model that mostly agrees: asserted pairs pushed up, the others down, with noise wide enough that some
        # of each side cross over (the suspects).
        logit = logit_prior[None, :] + np.where(y, 3.0, -1.0).astype(np.float32) \
            + rng.normal(0.0, 1.5, size=y.shape).astype(np.float32)
        p = 1.0 / (1.0 + np.exp(-logit))
        # Synonym pairs (tag 20 + 2i and 21 + 2i): the second name is used on a random 30% of the first's clips
        # and the model scores both alike, so the merge evidence has pairs to find.
        for a in range(20, min(n_tags - 1, 60), 2):
            renamed = y[:, a] & (rng.random(len(y)) < 0.3)
            y[:, a + 1] = renamed
            y[:, a] &= ~renamed
            p[:, a + 1] = p[:, a]
        targets[start:stop] = y
        scores[start:stop] = p
        if context is not None:
            q = 1.0 / (1.0 + np.exp(-(logit + rng.normal(0.0, 0.5, size=y.shape).astype(np.float32))))
            context[start:stop] = q
    folds = (np.arange(n) % 5).astype(np.int64)
    meta = {"run_id": run_dir.name, "features": "both", "fbank_stats": "fine-decay", "repeats": 3, "folds": 5,
            "method": "synthetic (bench/model_audit_scale.py)", "n_clips": n, "n_tags": n_tags, "seconds": None}
    if inline:
        # The first format (before 2026-12-02): everything inside one compressed npz, which older code reads.
        out = run_dir / "model_audit"
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "oos_scores.npz", clip_ids=np.array(clip_ids), labels=np.array(labels),
                            scores=scores, targets=targets, folds=folds)
        (out / "oos_scores.json").write_text(json.dumps(meta))
        return meta
    return write_scores(run_dir, clip_ids, labels, scores, targets, folds,
                        {"run_id": run_dir.name, "features": "both", "fbank_stats": "fine-decay", "repeats": 3,
                         "folds": 5, "method": "synthetic (bench/model_audit_scale.py)", "n_clips": n,
                         "n_tags": n_tags, "seconds": None, "context": "discount" if disputes else "none"},
                        disputes=context)


CHILD = r"""
import json, resource, sys, threading, time
sys.path.insert(0, {project!r})
from curation import store
step, db, run_dir = sys.argv[1], sys.argv[2], sys.argv[3]
# Peak RSS counts the pages of a memory-mapped file that were read (page cache the kernel can take back); the
# anonymous part (what the process itself allocated) is sampled from /proc every 50 ms.
peak_anon = [0]
def sample():
    while True:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    peak_anon[0] = max(peak_anon[0], int(line.split()[1]))
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
con = store.connect(db)
started = time.perf_counter()
if step == "audit":
    from curation.audit.model_audit import read_oos_scores, store_audit_of
    audit = store_audit_of(con, "scale", read_oos_scores(run_dir))
    out = {{"suspects": len(audit.suspects), "hallucinations": int((audit.suspects["kind"] == "hallucination").sum()),
           "stored_pairs": con.execute("SELECT stored_pairs FROM model_audits WHERE run_id = 'scale'").fetchone()[0]}}
else:
    from curation.audit.model_overlap import model_evidence
    evidence = model_evidence(con, "scale")
    out = {{"pairs": len(evidence.pairs), "tags": len(evidence.tags)}}
out["seconds"] = round(time.perf_counter() - started, 1)
out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
out["peak_anon_rss_gb"] = round(peak_anon[0] / 1e6, 2)
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/uts_bench")
    parser.add_argument("--tags", type=int, default=800)
    parser.add_argument("--clips", type=int, default=None, help="use the first N clips of the corpus (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project", default=str(PROJECT),
                        help="the checkout whose code the measured steps run (e.g. a worktree of an older commit)")
    parser.add_argument("--disputes", action="store_true",
                        help="also write a context head's matrix (--context discount): hallucinations are then found "
                             "with it, misses with the scores")
    parser.add_argument("--inline-npz", action="store_true",
                        help="write the scores in the first format (inside the npz), which older code reads")
    args = parser.parse_args()
    from ingest_scale import copy_of_bench_database

    from curation import store

    workdir = Path(args.workdir)
    db = copy_of_bench_database(workdir, "model_audit_scale.duckdb")
    con = store.connect(db, read_only=True)
    clip_ids = [r[0] for r in con.execute("SELECT clip_id FROM clips ORDER BY clip_key").fetchall()]
    con.close()
    if args.clips:
        clip_ids = clip_ids[:args.clips]
    run_dir = workdir / (f"model_audit_scale_k{args.tags}{'_inline' if args.inline_npz else ''}"
                         f"{'_disputes' if args.disputes else ''}")
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    started = time.perf_counter()
    write_synthetic_scores(run_dir, clip_ids, args.tags, args.seed, inline=args.inline_npz, disputes=args.disputes)
    print(f"synthetic scores of {len(clip_ids):,} clips x {args.tags} tags written in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    results = {"clips": len(clip_ids), "tags": args.tags, "project": args.project, "inline_npz": args.inline_npz,
               "disputes": args.disputes,
               "machine": f"{platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} cpus", "load_before": os.getloadavg()}
    child = CHILD.format(project=args.project)
    for step in ("audit", "evidence"):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", child, step, str(db), str(run_dir)], capture_output=True,
                                text=True, check=False)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            results[step] = {"failed": result.returncode, "wall_s": round(wall, 1),
                             "stderr": result.stderr[-800:]}
        else:
            results[step] = {**json.loads(result.stdout.strip().splitlines()[-1]), "wall_s": round(wall, 1)}
        print(step, json.dumps(results[step]), flush=True)
    results["load_after"] = os.getloadavg()
    results["max_child_rss_gb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 2)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
