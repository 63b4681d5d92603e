"""How fast audio headers are read: probe_files on N WAV files (warm and, when allowed, cold page cache), the
ingest of a folder of them (headers read as part of it), and probe-audio over a database ingested with --no-probe.

Target (issue 13): >= 2,000 WAV headers/s on the 2-core machine.
Usage: python bench/probe_audio_speed.py [--files 20000] [--workers 1,4,8]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation import store  # noqa: E402
from curation.ingest.audio_probe import probe_files, probe_stored_audio  # noqa: E402
from curation.ingest.ingest import ingest_path  # noqa: E402


def drop_page_cache() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--workers", default="1,4,8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "audio"
        for sub in range(10):
            (folder / f"part{sub}").mkdir(parents=True)
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        paths = []
        for i in range(args.files):
            path = folder / f"part{i % 10}" / f"clip{i:06d}.wav"
            rate = (8_000, 16_000, 22_050, 44_100, 48_000)[i % 5]
            soundfile.write(str(path), rng.standard_normal((rate // 10, 1 + i % 2)).astype(np.float32) * 0.1, rate,
                            subtype="PCM_16")
            paths.append(str(path))
        print(f"wrote {args.files:,} WAV files (0.1 s, 8-48 kHz, mono/stereo) in {time.perf_counter() - started:.1f} s")
        print(f"load average: {os.getloadavg()}")
        for workers in (int(w) for w in args.workers.split(",")):
            for cache in ("warm", "cold"):
                if cache == "cold" and not drop_page_cache():
                    print("  (cold cache not measured: cannot write /proc/sys/vm/drop_caches)")
                    continue
                started = time.perf_counter()
                headers = probe_files(paths, workers=workers)
                seconds = time.perf_counter() - started
                assert all(not isinstance(h, str) for h in headers)
                print(f"probe_files workers={workers} {cache}: {len(paths) / seconds:,.0f} headers/s "
                      f"({seconds:.2f} s)")
        con = store.connect(Path(tmp) / "a.duckdb")
        started = time.perf_counter()
        summary = ingest_path(con, folder)
        seconds = time.perf_counter() - started
        print(f"ingest of the folder (headers read): {summary.clips:,} clips in {seconds:.1f} s "
              f"({summary.clips / seconds:,.0f} clips/s)")
        con.close()
        con = store.connect(Path(tmp) / "b.duckdb")
        ingest_path(con, folder, probe_audio=False)
        drop_page_cache()
        probe = probe_stored_audio(con)
        print(f"probe-audio over a --no-probe database, cold cache: {probe.read:,} files in {probe.seconds:.1f} s "
              f"({probe.read / probe.seconds:,.0f} files/s)")
        con.close()
        print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
