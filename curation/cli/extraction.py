"""``python -m curation extract-tags`` and ``python -m curation caption``: the tagging and captioning jobs.

Place in the flow: the command-line face of curation/extraction/jobs.py (the app's Tagging page calls the same).

Example::

    python -m curation extract-tags --db data/uts.duckdb                      # open-vocabulary spaCy extractor
    python -m curation extract-tags --db data/uts.duckdb --backend lexicon    # the closed audio lexicon
    python -m curation extract-tags --db data/uts.duckdb --backend openai --base-url http://gpu:8000/v1 \\
        --model Qwen2.5-7B-Instruct --concurrency 32
    python -m curation extract-tags --db data/uts.duckdb --backend openai --model Qwen2.5-7B-Instruct \\
        --base-url http://gpu1:8000/v1 --base-url http://gpu2:8000/v1,http://gpu3:8000/v1   # several servers
    python -m curation caption --db data/uts.duckdb --backend openai --base-url http://gpu:8001/v1 \\
        --model Qwen3-Omni-30B-A3B-Captioner
"""
from __future__ import annotations

import argparse
import json
import sys

from curation.extraction.backends import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DROP_AFTER,
    DEFAULT_REPROBE_S,
    DEFAULT_RETRIES,
    DEFAULT_TAG_BACKEND,
    DEFAULT_TIMEOUT_S,
    TAG_BACKENDS,
)

COMMANDS = ("extract-tags", "caption")


def add_commands(commands, db_argument) -> None:
    tags = commands.add_parser("extract-tags", help="tag clips that have a caption (offline open-vocabulary "
                                                    "extractor by default, the lexicon, an LLM server or a local "
                                                    "model); resumable")
    db_argument(tags)
    tags.add_argument("--backend", choices=TAG_BACKENDS, default=DEFAULT_TAG_BACKEND,
                      help="offline (default): open-vocabulary tags from spaCy's English tagger, no server; "
                           "lexicon: the closed audio lexicon (~300 tags); openai: an OpenAI-compatible server "
                           "(vLLM, Ollama, llama.cpp, TGI); transformers: a causal LM from a local folder")
    tags.add_argument("--captioner", help="tag the captions of this captioner (default: each clip's first)")
    tags.add_argument("--use-vocabulary", action="store_true",
                      help="lexicon backend: also match the corpus's existing tags, not only the lexicon")
    tags.add_argument("--processes", type=int,
                      help="offline backend: worker processes for large jobs (default: one per core, at most 4)")
    _common(tags, max_tokens=200)

    caption = commands.add_parser("caption", help="caption clips that have audio but no caption from this "
                                                  "captioner; resumable")
    db_argument(caption)
    caption.add_argument("--backend", choices=("openai", "transformers"), required=True,
                         help="openai: a server taking audio input (e.g. vLLM serving Qwen3-Omni-30B-A3B-Captioner); "
                              "transformers: an audio-to-text model from a local folder")
    caption.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95, as the paper)")
    _common(caption, max_tokens=1024, temperature=0.6)


def _common(parser: argparse.ArgumentParser, *, max_tokens: int, temperature: float = 0.3) -> None:
    parser.add_argument("--base-url", action="append",
                        help="server URL including /v1, e.g. http://127.0.0.1:8000/v1; several servers: repeat the "
                             "flag or give a comma list (requests go to whichever server is free; a failing one is "
                             "taken out of rotation and its requests are sent elsewhere)")
    parser.add_argument("--model", help="model name on the server (openai) or a local model folder (transformers)")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY",
                        help="environment variable holding the API key (default OPENAI_API_KEY; unset is fine for "
                             "local servers)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help=f"requests in flight per server (openai; default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--drop-after", type=int, default=DEFAULT_DROP_AFTER,
                        help="openai: take a server out of rotation after this many failed requests in a row "
                             f"(connection, timeout, 5xx after the retries; default {DEFAULT_DROP_AFTER}); one "
                             "failure whose server also fails its health check (GET /models) drops it at once")
    parser.add_argument("--reprobe-s", type=float, default=DEFAULT_REPROBE_S,
                        help="openai: check a dropped server again this often and let it rejoin when it answers "
                             f"(default {DEFAULT_REPROBE_S:g} s; 0: never)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per generate call (transformers)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per request")
    parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                        help="retries with backoff on 429/5xx/connection errors")
    parser.add_argument("--temperature", type=float, default=temperature)
    parser.add_argument("--max-tokens", type=int, default=max_tokens)
    parser.add_argument("--device", help="transformers: cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--limit", type=int, help="at most this many clips in this run")
    parser.add_argument("--force", action="store_true",
                        help="redo clips this backend + prompt version already did")
    parser.add_argument("--by", help="who runs the job (stored with it)")
    parser.add_argument("--json", action="store_true", help="print the final report as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def make_backend(args: argparse.Namespace, task: str, con=None):
    """The backend the arguments describe (a typed error when something it needs is missing)."""
    from curation.errors import UsageError
    from curation.extraction.backends import build_backend
    from curation.store import vocabulary as store_vocabulary

    if getattr(args, "use_vocabulary", False) and args.backend != "lexicon":
        raise UsageError(f"--use-vocabulary matches corpus tags with the lexicon extractor: add --backend lexicon "
                         f"(the {args.backend} backend reads every word of the caption already)")
    vocabulary = store_vocabulary.raw_tag_texts(con) if getattr(args, "use_vocabulary", False) and con is not None else None
    return build_backend(args.backend, task, base_url=args.base_url, model=args.model, concurrency=args.concurrency,
                         timeout_s=args.timeout, retries=args.retries, temperature=args.temperature,
                         top_p=getattr(args, "top_p", None), max_tokens=args.max_tokens, api_key_env=args.api_key_env,
                         batch_size=args.batch_size, device=args.device, vocabulary=vocabulary,
                         processes=getattr(args, "processes", None), drop_after=args.drop_after,
                         reprobe_s=args.reprobe_s)


def run(args: argparse.Namespace) -> int:
    from curation import store
    from curation.extraction.jobs import run_job

    task = "tags" if args.command == "extract-tags" else "captions"
    con = store.connect(args.db)
    bar = None
    try:
        backend = make_backend(args, task, con)

        drops_told: dict[str, int] = {}

        def on_progress(progress) -> None:
            nonlocal bar
            for server in progress.servers:  # a server taken out of rotation is said at once, not only at the end
                if server["drops"] > drops_told.get(server["url"], 0) and server["state"] == "dropped":
                    drops_told[server["url"]] = server["drops"]
                    message = (f"server {server['url']} taken out of rotation after {server['answered']:,} answers: "
                               f"{server['reason']}")
                    (bar.write if bar is not None else print)(message, file=sys.stderr)
            if args.no_progress:
                return
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=progress.planned, unit="clip", desc=f"{task} job {progress.job_id}",
                           file=sys.stderr, smoothing=0.1)
            bar.update(progress.finished - bar.n)
            live = sum(server["state"] == "live" for server in progress.servers)
            bar.set_postfix(failed=progress.failed, refresh=False,
                            **({"servers": f"{live}/{len(progress.servers)}"} if len(progress.servers) > 1 else {}))

        report = run_job(con, backend, task=task, limit=args.limit, force=args.force, by=args.by,
                         captioner=getattr(args, "captioner", None), on_progress=on_progress)
    finally:
        if bar is not None:
            bar.close()
        con.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        what = "tags per clip" if task == "tags" else "captions"
        extra = f", {report.tags_per_clip:.1f} {what}" if task == "tags" else ""
        print(f"job {report.job_id} ({report.producer}, prompt {report.prompt_hash}): {report.status}; "
              f"done {report.done}, failed {report.failed}, skipped {report.skipped} (already done), "
              f"not eligible {report.not_eligible}{extra}; {report.seconds:.1f} s, {report.per_second:.1f} clips/s")
        for line in server_lines(report.servers):
            print(line)
        if report.failed:
            print("failures (with the model's raw answer): table extraction_attempts, or the Tagging page",
                  file=sys.stderr)
    return 0 if report.status == "finished" else 1


def server_lines(servers) -> list[str]:
    """One line per server of a multi-server job (none for one server that stayed up): who answered what, who was
    dropped and why."""
    if len(servers) < 2 and not any(s["drops"] for s in servers):
        return []
    lines = []
    for s in servers:
        mean = f", mean {s['mean_ms']:g} ms" if s["mean_ms"] is not None else ""
        line = f"  {s['url']}: {s['state']}, answered {s['answered']:,}, {s['errors']:,} failed requests{mean}"
        if s["drops"]:
            line += (f"; taken out of rotation {s['drops']}x" + (f", rejoined {s['rejoins']}x" if s["rejoins"] else "")
                     + f" (last: {s['reason']})")
        lines.append(line)
    return lines
