"""The numbers behind the Runs, Compare and Vocabulary size pages: run detail, lineage, config diff, probe
table, and the runs that differ only in K with a metric against K beside the coverage curve.

Place in the flow: imported runs -> (this module) -> dashboards. Example: ``compare_runs(con, ids).probe_table``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import duckdb
import numpy as np
import pandas as pd

from curation.runs import backends as launcher
from curation.runs.state import ACTIVE, require_run
from curation.store import runs as store_runs

# Keys that differ between runs by construction: never part of a config diff or of "differs only in K".
_RUN_SPECIFIC_KEYS = {"out", "out_dir", "run_dir", "run_id", "created_at", "argv", "dir", "export_dir", "sweep_id",
                      "content_hash", "label_file", "cuts_file", "created_by"}


_K_KEYS = {"k", "export_id", "vocabulary_size", "clips_kept", "clips_dropped", "clips_without_duration"}


@dataclass(frozen=True)
class RunDetail:
    run: dict
    metrics: pd.DataFrame  # run_id, step, kind, time_s, loss, ..., val_map
    probes: pd.DataFrame
    log: str  # the last lines of train.log
    script: str  # the job's driver script (job.sh) or sbatch script, as written

    @property
    def active(self) -> bool:
        return self.run["state"] in ACTIVE


def run_detail(con: duckdb.DuckDBPyConnection, run_id: str, log_lines: int = 40) -> RunDetail:
    row = require_run(con, run_id)
    return RunDetail(run=row, metrics=store_runs.metrics_frame(con, [run_id]),
                     probes=store_runs.probe_frame(con, [run_id]),
                     log=launcher.log_tail(Path(row["run_dir"]), log_lines),
                     script=launcher.job_script(Path(row["run_dir"])))


def runs_table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return store_runs.runs_frame(con)


def exports_table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return store_runs.exports_frame(con)


@dataclass(frozen=True)
class Lineage:
    """run -> export -> vocabulary version (last decision included, K, ranking) -> decisions included."""

    run_id: str
    export: dict | None
    decisions: pd.DataFrame  # decision_id, when, by, what, reason, in_effect (as of the export)

    def describe(self) -> str:
        if self.export is None:
            return f"run {self.run_id}: its export is not in this database"
        e = self.export
        return (f"run {self.run_id} <- export #{e['export_id']} (K={e['k']:,}, {e['ranking']}, "
                f"{e['clips_kept']:,} clips, hash {e['content_hash'][:10]}) <- vocabulary as of decision "
                f"#{e['last_decision_id']} ({len(self.decisions):,} decisions in the log then)")


def lineage(con: duckdb.DuckDBPyConnection, run_id: str) -> Lineage:
    from curation.vocabulary.decisions import decision_log_frame, list_decisions, replay

    row = require_run(con, run_id)
    export = store_runs.export_row(con, int(row["export_id"])) if row["export_id"] is not None else None
    if export is None:
        return Lineage(run_id, None, decision_log_frame([], replay([])))
    included = list_decisions(con, up_to=int(export["last_decision_id"]))
    return Lineage(run_id, export, decision_log_frame(included, replay(included)))


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in _RUN_SPECIFIC_KEYS:
                continue
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(value) if isinstance(value, (list, dict)) else value}


def run_settings(row: dict) -> dict:
    """One flat dict per run: the launch settings and, once training wrote config.json, every TrainConfig field
    (``train.*``); paths and ids that differ by construction are left out."""
    settings = _flatten({k: v for k, v in (row.get("config") or {}).items() if k not in ("extra_set",)})
    settings.update(_flatten(row.get("train_config") or {}, "train."))
    return settings


def config_diff(rows: Sequence[dict]) -> pd.DataFrame:
    """Rows = settings whose values differ between the runs (missing counts as different), columns = runs."""
    flat = {row["run_id"]: run_settings(row) for row in rows}
    keys = sorted(set().union(*[set(f) for f in flat.values()])) if flat else []
    differing = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flat.values()}) > 1]
    frame = pd.DataFrame({run_id: [_cell(f.get(k)) for k in differing] for run_id, f in flat.items()},
                         index=pd.Index(differing, name="setting"))
    return frame


def _cell(value) -> str:
    return "—" if value is None else str(value)


def probe_table(probes: pd.DataFrame, encoder: str = "pretrained") -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows = runs, columns = "task / pooling" (mean over folds, higher is better for accuracy and mAP);
    returns the table and, per column, the run with the best value."""
    frame = probes[probes["encoder"] == encoder] if not probes.empty else probes
    if frame.empty:
        return pd.DataFrame(), {}
    frame = frame.assign(column=frame["task"] + " / " + frame["pooling"])
    table = frame.pivot_table(index="run_id", columns="column", values="mean", aggfunc="last")
    table = table.reindex(sorted(table.columns), axis=1)
    best = {column: str(table[column].idxmax()) for column in table.columns if table[column].notna().any()}
    return table, best


@dataclass(frozen=True)
class Comparison:
    runs: list[dict]
    metrics: pd.DataFrame
    config_diff: pd.DataFrame
    probe_table: pd.DataFrame
    best: dict[str, str]  # column -> run_id with the best value
    baselines: pd.DataFrame  # random_init / fbank probe results of the same runs


def compare_runs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> Comparison:
    rows = store_runs.runs_in(con, run_ids)
    probes = store_runs.probe_frame(con, run_ids)
    table, best = probe_table(probes)
    baselines = probes[probes["encoder"] != "pretrained"] if not probes.empty else probes
    return Comparison(runs=rows, metrics=store_runs.metrics_frame(con, run_ids), config_diff=config_diff(rows),
                      probe_table=table, best=best, baselines=baselines)


@dataclass(frozen=True)
class KGroup:
    """Runs whose settings are equal except for K (and the export that carries it)."""

    label: str
    run_ids: tuple[str, ...]
    ks: tuple[int, ...]
    last_decision_ids: tuple[int, ...]


def _k_signature(row: dict) -> str:
    settings = {k: v for k, v in run_settings(row).items()
                if k not in _K_KEYS and not k.startswith("export.") and k.split(".")[-1] not in _K_KEYS}
    return json.dumps(settings, sort_keys=True, default=str)


def k_groups(con: duckdb.DuckDBPyConnection) -> list[KGroup]:
    """Groups of at least two finished runs at different K that differ in nothing else, most Ks first."""
    groups: dict[str, list[dict]] = {}
    for row in store_runs.all_run_configs(con):
        if row["state"] != "finished" or row["k"] is None:
            continue
        groups.setdefault(_k_signature(row), []).append(row)
    out = []
    for rows in groups.values():
        ks = sorted({int(r["k"]) for r in rows})
        if len(ks) < 2:
            continue
        first = rows[0]["config"] or {}
        label = (f"{first.get('objective')} / {first.get('size')} / {first.get('steps')} steps: "
                 f"K = {', '.join(f'{k:,}' for k in ks)} ({len(rows)} runs)")
        decision_ids = []
        for r in rows:
            export = store_runs.export_row(con, int(r["export_id"])) if r["export_id"] is not None else None
            decision_ids.append(int(export["last_decision_id"]) if export else -1)
        out.append(KGroup(label, tuple(r["run_id"] for r in rows), tuple(int(r["k"]) for r in rows),
                          tuple(decision_ids)))
    return sorted(out, key=lambda g: (-len(set(g.ks)), g.label))


# Validation mAP is averaged over each run's own label set, so a smaller K scores higher for that reason alone;
# this one averages AP over the tags every compared vocabulary has, which is comparable across K.
COMMON_TAGS_MAP = "val mAP over the tags common to every K"


def k_metric_options(con: duckdb.DuckDBPyConnection, group: KGroup) -> list[str]:
    probes = store_runs.probe_frame(con, group.run_ids)
    options = ["val mAP"]
    if all(not store_runs.tag_ap_frame(con, r).empty for r in group.run_ids):
        options.append(COMMON_TAGS_MAP)
    if not probes.empty:
        pretrained = probes[probes["encoder"] == "pretrained"]
        options += sorted({f"probe: {t} / {p}" for t, p in zip(pretrained["task"], pretrained["pooling"])})
    return options


def k_metric_frame(con: duckdb.DuckDBPyConnection, group: KGroup, metric: str) -> pd.DataFrame:
    """k, run_id, value (mean over runs at the same K as ``value_mean``) for one downstream metric."""
    rows = {r["run_id"]: r for r in store_runs.runs_in(con, group.run_ids)}
    common: set[str] | None = None
    if metric == "val mAP":
        values = [(rows[r]["k"], r, rows[r]["final_val_map"]) for r in group.run_ids]
    elif metric == COMMON_TAGS_MAP:
        per_run = {r: store_runs.tag_ap_frame(con, r) for r in group.run_ids}
        for frame_ in per_run.values():
            tags = set(frame_.loc[frame_["ap"].notna(), "tag"])
            common = tags if common is None else common & tags
        common = common or set()
        values = [(rows[r]["k"], r, float(per_run[r].loc[per_run[r]["tag"].isin(common), "ap"].mean())
                   if common else None) for r in group.run_ids]
    else:
        task, _, pooling = metric.removeprefix("probe: ").rpartition(" / ")
        probes = store_runs.probe_frame(con, group.run_ids)
        probes = probes[(probes["encoder"] == "pretrained") & (probes["task"] == task) & (probes["pooling"] == pooling)]
        by_run = dict(zip(probes["run_id"], probes["mean"]))
        values = [(rows[r]["k"], r, by_run.get(r)) for r in group.run_ids]
    frame = pd.DataFrame(values, columns=["k", "run_id", "value"]).astype({"value": float})
    frame["value_mean"] = frame.groupby("k")["value"].transform("mean")
    frame = frame.sort_values(["k", "run_id"], ignore_index=True)
    frame.attrs["common_tags"] = len(common) if common is not None else None
    return frame


def coverage_at(con: duckdb.DuckDBPyConnection, ks: Sequence[int], last_decision_id: int | None,
                rank_by: str = "tfidf", matrix=None) -> pd.DataFrame:
    """The coverage curve (share of clips keeping a tag, per K) of the vocabulary as of ``last_decision_id``
    (the version the exports were made from; None = now), with ``at_run_k`` marking the runs' K."""
    from curation.vocabulary.decisions import list_decisions, replay
    from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix

    records = list_decisions(con, up_to=last_decision_id)
    view = compute_vocabulary(matrix if matrix is not None else load_tag_matrix(con), replay(records), rank_by=rank_by)
    coverage = view.coverage[["k", "share_kept", "clips_kept", "mean_tags"]].copy()
    coverage["at_run_k"] = coverage["k"].isin([int(k) for k in ks])
    return coverage


def tag_ap_frame(con: duckdb.DuckDBPyConnection, run_id: str, matrix=None,
                 campaign: str | None = None) -> pd.DataFrame:
    """Per tag of a run's last validation: ap, positives (validation clips), df (clips carrying the tag in the
    corpus, as of the run's export) and, with an audit ``campaign``, the audited precision of the tag (verdicts
    on raw tags summed over each canonical tag)."""
    from curation.vocabulary.decisions import list_decisions, replay
    from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix

    row = require_run(con, run_id)
    frame = store_runs.tag_ap_frame(con, run_id)
    if frame.empty:
        return frame.assign(df=pd.Series(dtype=float))
    export = store_runs.export_row(con, int(row["export_id"])) if row["export_id"] is not None else None
    state = replay(list_decisions(con, up_to=int(export["last_decision_id"]) if export is not None else None))
    view = compute_vocabulary(matrix if matrix is not None else load_tag_matrix(con), state,
                              rank_by=export["ranking"] if export else "tfidf")
    frame = frame.merge(view.ranking[["tag", "df"]], on="tag", how="left")
    if campaign is not None:
        from curation.audit.report import campaign_report

        precision = campaign_report(con, campaign, matrix=matrix).precision
        if not precision.empty:
            precision = precision.assign(tag=[state.canonical(t) for t in precision["tag"]])
            agg = precision.groupby("tag", as_index=False)[["correct", "judged"]].sum()
            agg["audit_precision"] = np.where(agg["judged"] > 0, agg["correct"] / agg["judged"].clip(lower=1), np.nan)
            frame = frame.merge(agg[["tag", "audit_precision", "judged"]], on="tag", how="left")
        else:
            frame = frame.assign(audit_precision=np.nan, judged=0)
    return frame


def audit_campaign_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    from curation.store import audit as store_audit

    return store_audit.campaigns(con)["name"].tolist()



def exports_with_runs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every export, newest first, with its lineage (K, ranking, last decision, content hash) and the runs that
    trained on it."""
    exports = store_runs.exports_frame(con)
    runs = store_runs.runs_frame(con)
    used_by: dict[int, list[str]] = {}
    for export_id, run_id in zip(runs["export_id"], runs["run_id"]):
        if pd.notna(export_id):
            used_by.setdefault(int(export_id), []).append(str(run_id))
    exports["runs"] = [", ".join(sorted(used_by.get(int(e), []))) for e in exports["export_id"]]
    return exports
