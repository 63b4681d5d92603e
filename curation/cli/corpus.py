"""``python -m curation demo | ingest | index-captions | stats``: the corpus in, and what is in it.

Example::

    python -m curation demo --db data/uts.duckdb --clips 600 --seed 0
    python -m curation ingest cuts.jsonl.gz --db data/uts.duckdb --on-bad-row skip
    python -m curation ingest release.parquet --db data/uts.duckdb --audio-root /data/audio
    python -m curation probe-audio --db data/uts.duckdb
    python -m curation stats --db data/uts.duckdb --json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

COMMANDS = ("demo", "ingest", "probe-audio", "index-captions", "stats")


def add_commands(commands, db_argument) -> None:
    demo = commands.add_parser("demo", help="synthesise the demo corpus (audio, biased captions, tags) and ingest it")
    db_argument(demo)
    demo.add_argument("--clips", type=int, default=600, help="number of clips (default 600)")
    demo.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same corpus")
    demo.add_argument("--out", help="folder for the demo audio and manifest (default: beside the database)")
    demo.add_argument("--if-empty", action="store_true",
                      help="do nothing when the database already holds clips (used by `make demo`)")
    demo.add_argument("--tag-map", action="store_true",
                      help="also compute the Tag map's projection, so that its first visit is instant (used by "
                           "`make demo`; ~10-30 s more)")

    ingest = commands.add_parser("ingest", help="ingest a manifest (Lhotse/JSONL/CSV/Parquet) or an audio folder")
    ingest.add_argument("path", help="manifest file or folder of audio files")
    db_argument(ingest)
    ingest.add_argument("--audio-root", help="folder that relative audio paths are resolved against "
                                             "(default: the manifest's folder)")
    ingest.add_argument("--on-bad-row", choices=("raise", "skip"), default="raise",
                        help="raise: reject the whole file at the first bad row (default); skip: leave bad rows "
                             "out, count them and store why")
    ingest.add_argument("--extractor", default="manifest", help="provenance name stored with the file's tags")
    ingest.add_argument("--captioner", default="manifest",
                        help="captioner name for captions whose record does not name one")
    ingest.add_argument("--audio-pattern", metavar="TEMPLATE",
                        help="where the audio of clips whose source names a dataset (the UTS release's "
                             "'audioset', ...) lies under --audio-root: a template with {root}, {source}, {id} and "
                             "optionally {ext} (each audio suffix is tried); default: {root}/{source}/{id}{ext}, "
                             "then {root}/{id}{ext}")
    ingest.add_argument("--no-probe", action="store_true",
                        help="do not read the audio files' headers (durations, rates, channels stay as declared; "
                             "run probe-audio later)")
    ingest.add_argument("--chunk-rows", type=int, default=50_000, metavar="N",
                        help="rows read, checked and written at a time (default 50,000: ~2-3 GB peak memory for "
                             "UTS-layout rows; the whole file is still one transaction)")
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")

    probe = commands.add_parser("probe-audio", help="read every clip's audio header (duration, sample rate, "
                                                    "channels, frames) and store what the files hold")
    db_argument(probe)
    probe.add_argument("--all", action="store_true", help="read every clip's file again (default: those not read yet)")
    probe.add_argument("--audio-root", help="also look for the audio of clips without a path whose source names a "
                                            "dataset, under this folder (see --audio-pattern)")
    probe.add_argument("--audio-pattern", metavar="TEMPLATE", help="as for ingest")
    probe.add_argument("--workers", type=int, help="threads reading headers (default: 2 x CPU cores, at most 16)")
    probe.add_argument("--json", action="store_true", help="print the summary as JSON (lists every unreadable file)")

    index = commands.add_parser("index-captions", help="(re)build the caption text index used by Browse search")
    db_argument(index)

    stats = commands.add_parser("stats", help="corpus counts")
    db_argument(stats)
    stats.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from curation import store  # imported here so that --help stays instant
    from curation.store import corpus as store_corpus

    if args.command == "demo":
        from curation.demo.corpus import build_and_ingest_demo, default_demo_dir

        db_path = store.resolve_db_path(args.db)
        con = store.connect(db_path)
        try:
            existing = store_corpus.corpus_stats(con)["clips"]
            if args.if_empty and existing:
                print(f"{db_path} already holds {existing:,} clips; not rebuilding the demo corpus")
                return 0
            out = Path(args.out) if args.out else default_demo_dir(db_path)
            result = build_and_ingest_demo(con, out, n_clips=args.clips, seed=args.seed)
            print(f"demo corpus of {args.clips} clips (seed {args.seed}) synthesised in "
                  f"{result.seconds_to_build:.1f} s under {result.corpus_dir}")
            print(result.ingest.as_text())
            if args.tag_map:
                import time

                from curation.vocabulary.tagmap import tag_projection

                started = time.perf_counter()
                points = tag_projection(con)
                print(f"tag map projection of {len(points.tags):,} tags computed in "
                      f"{time.perf_counter() - started:.1f} s (the Tag map page opens without waiting)")
        finally:
            con.close()
        return 0
    if args.command == "ingest":
        from curation.ingest.ingest import ingest_path

        con = store.connect(args.db)
        try:
            summary = ingest_path(con, Path(args.path), audio_root=args.audio_root, on_bad_row=args.on_bad_row,
                                  extractor=args.extractor, captioner=args.captioner,
                                  audio_pattern=args.audio_pattern, probe_audio=not args.no_probe,
                                  chunk_rows=args.chunk_rows)
        finally:
            con.close()
        print(json.dumps(summary.as_dict(), indent=2) if args.json else summary.as_text())
        return 0
    if args.command == "probe-audio":
        from curation.ingest.audio_probe import check_audio_pattern, probe_stored_audio

        if args.audio_pattern:
            check_audio_pattern(args.audio_pattern)
        con = store.connect(args.db)
        try:
            summary = probe_stored_audio(con, all_clips=args.all, audio_root=args.audio_root,
                                         audio_pattern=args.audio_pattern, workers=args.workers)
        finally:
            con.close()
        print(json.dumps(summary.as_dict(), indent=2) if args.json else summary.as_text())
        return 0
    if args.command == "index-captions":
        import time

        from curation.ingest.text_index import index_captions

        con = store.connect(args.db)
        try:
            started = time.perf_counter()
            index_captions(con)
        finally:
            con.close()
        print(f"caption index rebuilt in {time.perf_counter() - started:.1f} s")
        return 0
    if args.command == "stats":
        con = store.connect(args.db, read_only=store.resolve_db_path(args.db).exists())
        try:
            stats = store_corpus.corpus_stats(con)
        finally:
            con.close()
        if args.json:
            print(json.dumps(stats))
        else:
            print(f"{stats['clips']:,} clips, {stats['captions']:,} captions, {stats['tag_rows']:,} tag rows, "
                  f"{stats['distinct_tags']:,} distinct tags")
            print("domains: " + ", ".join(f"{k} {v:,}" for k, v in stats["domains"].items()))
            print("sources: " + ", ".join(f"{k} {v:,}" for k, v in stats["sources"].items()))
        return 0
    raise AssertionError(f"unhandled command {args.command}")  # argparse restricts the choices
