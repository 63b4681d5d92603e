"""``python -m curation runs {launch,list,import,cancel,show}``: training runs from the command line, on the same
library as the Runs page (curation.runs).

Example::

    python -m curation runs launch --db DB --k 800 --k 1500 --k 3000 --objective mtc --size tiny --steps 2000 --by ana
    python -m curation runs list --db DB
    python -m curation runs import runs/20261127-0412-k800-mtc-tiny-1a2b --db DB   # or no DIR: refresh every active run
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

COMMANDS = ("runs",)


def add_commands(commands, db_argument) -> None:
    runs = commands.add_parser("runs", help="launch, follow, import and compare training runs")
    actions = runs.add_subparsers(dest="runs_action", required=True)

    launch = actions.add_parser("launch", help="one run per --k (exported now from the current vocabulary), "
                                               "or one run on an existing export")
    db_argument(launch)
    source = launch.add_mutually_exclusive_group(required=True)
    source.add_argument("--k", type=int, action="append", help="vocabulary size to export now (repeat to sweep K)")
    source.add_argument("--export-id", type=int, help="an existing export (see `runs list --exports`)")
    launch.add_argument("--rank-by", choices=("tfidf", "df"), default="tfidf", help="ranking of the new exports")
    launch.add_argument("--objective", choices=("mtc", "par", "mtc+par"), default="mtc")
    launch.add_argument("--size", choices=("tiny", "small", "base"), default="tiny")
    launch.add_argument("--steps", type=int, default=1000)
    launch.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    launch.add_argument("--gpus", type=int, default=1, help="processes (GPUs) per node; > 1 runs torchrun")
    launch.add_argument("--nodes", type=int, default=1, help="Slurm nodes")
    launch.add_argument("--batch-seconds", type=float, help="audio seconds per batch per process")
    launch.add_argument("--lr", type=float, help="peak learning rate")
    launch.add_argument("--probe-task", action="append", default=[], metavar="TASK.csv",
                        help="probe this task after training (repeatable)")
    launch.add_argument("--audit-folds", type=int, default=0, metavar="K",
                        help="after training (and probes), also score every clip out of sample with K folds on the "
                             "job's device, for `model-audit` to reuse (default 0: off)")
    launch.add_argument("--backend", choices=("local", "slurm"), default="local")
    launch.add_argument("--partition", help="Slurm partition")
    launch.add_argument("--time", dest="time_limit", help="Slurm time limit, e.g. 24:00:00")
    launch.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment override")
    launch.add_argument("--set", dest="extra_set", action="append", default=[], metavar="KEY=VALUE",
                        help="training config override (repeatable)")
    launch.add_argument("--runs-dir", help="parent folder of run directories (default: $UTS_RUNS_DIR, else "
                                           "runs/ beside the database)")
    launch.add_argument("--exports-dir", help="parent folder of new exports (default: $UTS_EXPORTS_DIR, else "
                                              "exports/ beside the database)")
    launch.add_argument("--workdir", help="folder the job runs in, holding the training package (default: this "
                                          "project; e.g. the checkout on the cluster's shared file system)")
    launch.add_argument("--python", help="interpreter of the job (default: this one; on a cluster, the python of "
                                         "its environment)")
    launch.add_argument("--by", required=True, help="who launches (stored with the run and its exports)")

    listing = actions.add_parser("list", help="runs (newest first) with state, K, step and val mAP")
    db_argument(listing)
    listing.add_argument("--exports", action="store_true", help="list the exports instead")
    listing.add_argument("--json", action="store_true")

    importing = actions.add_parser("import", help="import run directories (incrementally); without DIR, poll and "
                                                  "import every queued or running run")
    db_argument(importing)
    importing.add_argument("dirs", nargs="*", metavar="DIR")

    cancel = actions.add_parser("cancel", help="end a queued or running run (its process group, or scancel)")
    db_argument(cancel)
    cancel.add_argument("run_id")
    cancel.add_argument("--by", help="who cancels")

    archive = actions.add_parser("archive", help="hide finished runs from the lists (kept, with their metrics); "
                                                 "--restore brings them back")
    db_argument(archive)
    archive.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    archive.add_argument("--restore", action="store_true", help="unarchive instead")
    archive.add_argument("--by", help="who archives")

    show = actions.add_parser("show", help="one run: state, settings, latest metrics, probe results, lineage, log")
    db_argument(show)
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from curation import store
    from curation.runs import compare, follow, importer, launch

    con = store.connect(args.db)
    try:
        if args.runs_action == "launch":
            env = launch.parse_key_values("\n".join(args.env), "--env")
            request = launch.LaunchRequest(
                objective=args.objective, size=args.size, steps=args.steps, device=args.device, gpus=args.gpus,
                nodes=args.nodes, batch_seconds=args.batch_seconds, lr=args.lr, export_id=args.export_id,
                ks=tuple(args.k or ()), rank_by=args.rank_by, probe_tasks=tuple(args.probe_task),
                audit_folds=args.audit_folds, backend=args.backend, env=env, extra_set=tuple(args.extra_set),
                partition=args.partition, time_limit=args.time_limit, workdir=args.workdir, python=args.python,
                by=args.by)
            run_ids = launch.launch_runs(con, request, runs_root=Path(args.runs_dir) if args.runs_dir else None,
                                       exports_root=Path(args.exports_dir) if args.exports_dir else None)
            for run_id in run_ids:
                print(run_id)
        elif args.runs_action == "list":
            frame = compare.exports_table(con) if args.exports else compare.runs_table(con).drop(columns=["run_dir"])
            if args.json:
                print(frame.to_json(orient="records", date_format="iso"))
            else:
                print(frame.to_string(index=False) if not frame.empty else "(none)")
        elif args.runs_action == "import":
            for folder in args.dirs:
                summary = importer.import_run_dir(con, Path(folder))
                print(f"{summary.run_id}: {summary.metric_lines} metric lines, {summary.probe_results} probe "
                      f"results, {summary.tag_ap_rows} per-tag AP rows"
                      + (" (new run)" if summary.created else "")
                      + (f", {summary.pending_bytes} bytes of a line still being written" if summary.pending_bytes else ""))
            for run_id, old, new in follow.refresh_runs(con):
                print(f"{run_id}: {old} -> {new}")
        elif args.runs_action == "cancel":
            follow.cancel_run(con, args.run_id, by=args.by)
            print(f"{args.run_id}: cancelled")
        elif args.runs_action == "archive":
            from curation.runs.manage import archive_runs

            changed = archive_runs(con, args.run_ids, by=args.by, archived=not args.restore)
            print(f"{'restored' if args.restore else 'archived'} {changed} of {len(args.run_ids)} runs")
        else:
            follow.refresh_runs(con, [args.run_id])
            detail = compare.run_detail(con, args.run_id)
            trace = compare.lineage(con, args.run_id)
            if args.json:
                print(json.dumps({"run": detail.run, "probes": detail.probes.to_dict("records"),
                                  "lineage": trace.describe(), "log_tail": detail.log}, default=str))
            else:
                run = detail.run
                print(f"{run['run_id']}: {run['state']} (step {run['last_step']}, val mAP {run['final_val_map']})")
                if run["message"]:
                    print(run["message"])
                print(trace.describe())
                print(f"command: {run['command']}")
                if not detail.probes.empty:
                    print(detail.probes.drop(columns=["run_id"]).to_string(index=False))
                print("--- train.log (last lines) ---")
                print(detail.log)
    finally:
        con.close()
    return 0
