"""Speed of the open-vocabulary offline extractor on long captions (issue 14: >= 100 captions/s on 2 cores for
captions of ~2.5 KB / ~388 words, the release's average, so 360k clips tag in about an hour).

    .venv/bin/python bench/extractor_speed.py                 # 2,000 long captions; ~1-2 min on 2 cores
    .venv/bin/python bench/extractor_speed.py --captions 600 --processes 1 2

The long captions are real ones (GAMA, MusicCaps, Clotho, AudioCaps from ../shared/data/captions) joined in a
seeded random order until each reaches 2,500 characters; without ../shared/data a fixed synthetic text stands in.
Three figures per process count: wall-clock captions/s with the worker pool already started (the steady state
of a long job), the same including the pool's start (each worker loads the model), and the CPU seconds one
caption costs (process time; for worker processes their own CPU time once they exit), which the machine's other
load does not inflate: 1000 / (CPU ms per caption) x free cores is the rate on an otherwise idle machine. Then a whole ``extract-tags`` job
(DuckDB read, tagging, parsing, writes) over the same captions in a temporary database. The load average is
printed before and after: other programs share the cores.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from curation.extraction.open_vocab import CaptionTagger, OpenVocabExtractor

CAPTIONS = PROJECT.parent / "shared" / "data" / "captions"
TARGET_CHARS = 2_500


def source_sentences() -> list[str]:
    texts: list[str] = []
    sources = [(CAPTIONS / "gama_llm_captions" / "audioset_eval_gama_joined.csv", "gama_caption"),
               (CAPTIONS / "musiccaps" / "musiccaps-public.csv", "caption"),
               (CAPTIONS / "clotho" / "test.csv", "caption_1"),
               (CAPTIONS / "audiocaps_v1" / "test.csv", "caption")]
    for path, column in sources:
        if path.exists():
            texts += [row[column] for row in csv.DictReader(path.open(encoding="utf-8")) if row[column]]
    if not texts:
        texts = [("The recording features a male voice speaking over a steady electronic beat with a deep bass line, "
                  "crisp hi-hats and a reverberant synth pad, while traffic hums in the distance and birds chirp.")]
    return [t if t.rstrip().endswith((".", "!", "?")) else t.rstrip() + "." for t in texts]


def long_captions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pool = source_sentences()
    out = []
    for _ in range(n):
        parts: list[str] = []
        length = 0
        while length < TARGET_CHARS:
            parts.append(rng.choice(pool))
            length += len(parts[-1]) + 1
        out.append(" ".join(parts))
    return out


def measure(captions: list[str], processes: int) -> dict:
    started = time.perf_counter()
    cpu_started = time.process_time()
    if processes == 1:
        extractor = OpenVocabExtractor()
        extractor.tag_many(captions[:20])  # load + warm the caches once
        ready = time.perf_counter()
        cpu_ready = time.process_time()
        tags = extractor.tag_many(captions)
        done = time.perf_counter()
        cpu_per_caption = (time.process_time() - cpu_ready) / len(captions)
    else:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        children_before = before.ru_utime + before.ru_stime
        tagger = CaptionTagger(processes)
        list(tagger.tag_batches([captions[:20 * processes]]))  # start the workers, load the model in each
        ready = time.perf_counter()
        tags = [t for batch in tagger.tag_batches(captions[k:k + 512] for k in range(0, len(captions), 512))
                for t in batch]
        done = time.perf_counter()
        tagger.close()
        # The workers' own CPU time (read once they have exited), model loading included: what the pool costs.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_per_caption = (children.ru_utime + children.ru_stime - children_before) / len(captions)
    del cpu_started
    return {"processes": processes, "steady_per_s": len(captions) / (done - ready),
            "with_start_per_s": len(captions) / (done - started), "cpu_ms_per_caption":
            None if cpu_per_caption is None else 1000 * cpu_per_caption, "tags_per_caption":
            sum(map(len, tags)) / len(tags)}


def job_run(captions: list[str], processes: int) -> dict:
    from curation import store
    from curation.extraction.backends import OpenVocabTagBackend
    from curation.extraction.jobs import run_job
    from curation.ingest.ingest import ingest_path

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "long.jsonl"
        manifest.write_text("".join(json.dumps({"id": f"c{i}", "caption": c}) + "\n" for i, c in enumerate(captions)))
        con = store.connect(Path(tmp) / "uts.duckdb")
        ingest_path(con, manifest)
        started = time.perf_counter()
        report = run_job(con, OpenVocabTagBackend(processes=processes), task="tags")
        seconds = time.perf_counter() - started
        con.close()
    return {"done": report.done, "failed": report.failed, "per_s": report.done / seconds, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captions", type=int, default=2000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-job", action="store_true", help="skip the whole-job figure")
    args = parser.parse_args()
    captions = long_captions(args.captions)
    chars = sum(map(len, captions)) / len(captions)
    words = sum(len(c.split()) for c in captions) / len(captions)
    print(f"{len(captions):,} long captions, {chars:,.0f} characters / {words:.0f} words on average; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()}")
    for processes in args.processes:
        sample = captions if processes > 1 else captions[: max(200, len(captions) // 4)]
        result = measure(sample, processes)
        cpu = (f", {result['cpu_ms_per_caption']:.1f} ms CPU per caption (= {1000 / result['cpu_ms_per_caption']:.0f} "
               f"captions/s per free core{', workers incl. model load' if processes > 1 else ''})"
               if result["cpu_ms_per_caption"] else "")
        print(f"  {processes} process(es), {len(sample):,} captions: {result['steady_per_s']:.1f} captions/s steady, "
              f"{result['with_start_per_s']:.1f} with start{cpu}; {result['tags_per_caption']:.2f} tags/caption; "
              f"load {os.getloadavg()}")
    if not args.no_job:
        processes = max(args.processes)
        job = job_run(captions, processes)
        print(f"  extract-tags job ({processes} processes) over {len(captions):,} long captions: done {job['done']:,}, "
              f"failed {job['failed']}, {job['per_s']:.1f} clips/s ({job['seconds']:.1f} s incl. worker start); "
              f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
