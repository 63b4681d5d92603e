"""The full curation log as JSONL, and its replay into a fresh database of the same corpus.

Place in the flow: decide -> (this module) -> a portable log. ``export_decision_log`` writes a header line and
then every decision (merge, rename, prune, restore, per-clip edit, undo) and every merge-suggestion verdict,
with who, when and why. ``replay_decision_log`` appends them, with their original ids, times and authors, to a
database that holds the same corpus and no decisions yet: every entry is checked exactly as when it was first
made (known tags, existing clips, undo targets, no cycles), and the first one that does not fit stops the
replay with its line number; nothing is written then (one transaction).

Example::

    export_decision_log(con, Path("log.jsonl"))
    replay_decision_log(fresh_con, Path("log.jsonl"))
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from curation import store
from curation.admin import permissions
from curation.errors import UtsError
from curation.store import backup as store_backup
from curation.store import corpus as store_corpus
from curation.store import decisions as store_decisions
from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.decisions import ACTIONS, Decision, DecisionError, DecisionRecord, _check

LOG_FORMAT = "uts-decision-log"
LOG_VERSION = 1


class DecisionLogError(UtsError, ValueError):
    """A decision log that cannot be replayed here (file:line says which entry and why)."""


@dataclass(frozen=True)
class LogSummary:
    path: str
    decisions: int
    suggestion_verdicts: int


def _iso(value) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


def export_decision_log(con: duckdb.DuckDBPyConnection, out: Path) -> LogSummary:
    decisions = store_decisions.decision_rows(con)
    verdicts = store_backup.suggestion_verdict_rows(con)
    stats = store_corpus.corpus_stats(con)
    lines = [{"kind": "header", "format": LOG_FORMAT, "version": LOG_VERSION,
              "exported_at": datetime.now(timezone.utc).isoformat(), "decisions": len(decisions),
              "suggestion_verdicts": len(verdicts),
              "corpus": {"clips": stats["clips"], "distinct_tags": stats["distinct_tags"]}}]
    lines += [{"kind": "decision", "decision_id": d[0], "decided_at": _iso(d[1]), "decided_by": d[2],
               "action": d[3], "payload": json.loads(d[4]), "reason": d[5]} for d in decisions]
    lines += [{"kind": "suggestion_verdict", "group_key": v[0], "verdict": v[1], "decided_by": v[2],
               "decided_at": _iso(v[3]), "members": json.loads(v[4]), "canonical": v[5]} for v in verdicts]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    partial.replace(out)
    return LogSummary(str(out), len(decisions), len(verdicts))


def _read(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise DecisionLogError(f"{path}: no such decision log")
    entries = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DecisionLogError(f"{path}: expected UTF-8 JSON lines, found undecodable bytes ({exc})") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DecisionLogError(f"{path}:{number}: expected one JSON object per line, found invalid JSON "
                                   f"({exc.msg})") from None
        if not isinstance(entry, dict):
            raise DecisionLogError(f"{path}:{number}: expected a JSON object, found {type(entry).__name__}")
        entries.append((number, entry))
    if not entries or entries[0][1].get("kind") != "header" or entries[0][1].get("format") != LOG_FORMAT:
        raise DecisionLogError(f"{path}:1: expected a header line with format {LOG_FORMAT!r} (written by "
                               "`python -m curation decisions export`)")
    if entries[0][1].get("version") != LOG_VERSION:
        raise DecisionLogError(f"{path}:1: log version {entries[0][1].get('version')!r}; this code reads version "
                               f"{LOG_VERSION}")
    return entries[1:]


def _time(path: Path, number: int, value) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise DecisionLogError(f"{path}:{number}: field 'decided_at': expected an ISO time, found {value!r}") from None


def replay_decision_log(con: duckdb.DuckDBPyConnection, path: Path) -> LogSummary:
    path = Path(path)
    permissions.authorize("decide")
    entries = _read(path)
    if store_backup.count_decisions(con):
        raise DecisionLogError(f"{path}: the target database already holds decisions; replay into a fresh "
                               "database of the same corpus (ingest it, then replay)")
    records: list[DecisionRecord] = []
    verdicts = 0
    with store.transaction(con):
        for number, entry in entries:
            kind = entry.get("kind")
            if kind == "decision":
                records.append(_replay_decision(con, path, number, entry, records))
            elif kind == "suggestion_verdict":
                _replay_verdict(con, path, number, entry)
                verdicts += 1
            else:
                raise DecisionLogError(f"{path}:{number}: field 'kind': expected 'decision' or "
                                       f"'suggestion_verdict', found {kind!r}")
    return LogSummary(str(path), len(records), verdicts)


def _replay_decision(con, path: Path, number: int, entry: dict, records: list[DecisionRecord]) -> DecisionRecord:
    decision_id, action, payload, by = (entry.get(k) for k in ("decision_id", "action", "payload", "decided_by"))
    expected_id = (records[-1].decision_id if records else 0) + 1
    if not isinstance(decision_id, int) or isinstance(decision_id, bool) or decision_id < expected_id:
        raise DecisionLogError(f"{path}:{number}: field 'decision_id': expected an integer of at least "
                               f"{expected_id} (ids increase through the log), found {decision_id!r}")
    if action not in ACTIONS or not isinstance(payload, dict):
        raise DecisionLogError(f"{path}:{number}: expected an action in {ACTIONS} with an object payload, found "
                               f"action {action!r}, payload {type(payload).__name__}")
    if not isinstance(by, str) or not by.strip():
        raise DecisionLogError(f"{path}:{number}: field 'decided_by': expected a non-empty name, found {by!r}")
    reason = entry.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise DecisionLogError(f"{path}:{number}: field 'reason': expected text or null, found {reason!r}")
    decided_at = _time(path, number, entry.get("decided_at"))
    decision = Decision(action, payload)
    try:
        _check(con, decision, records)
    except (DecisionError, KeyError, TypeError) as exc:
        raise DecisionLogError(f"{path}:{number}: decision #{decision_id} ({action}) does not fit this database: "
                               f"{exc}") from None
    new_texts = [payload["into"]] if action in ("merge", "rename") else [payload["tag"]] if action == "clip_add" else []
    store_vocabulary.intern_tags(con, new_texts)
    store_decisions.append_decision(con, action, json.dumps(payload), by, reason, decision_id=decision_id,
                                    decided_at=decided_at)
    return DecisionRecord(decision_id, decided_at, by, action, payload, reason)


def _replay_verdict(con, path: Path, number: int, entry: dict) -> None:
    group_key, verdict, by, members = (entry.get(k) for k in ("group_key", "verdict", "decided_by", "members"))
    if not isinstance(group_key, str) or verdict not in ("accepted", "rejected") or not isinstance(by, str) \
            or not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise DecisionLogError(f"{path}:{number}: expected a suggestion verdict (group_key, verdict accepted|"
                               f"rejected, decided_by, members: list of tags), found {json.dumps(entry)[:200]}")
    canonical = entry.get("canonical")
    store_backup.insert_suggestion_verdict_as_logged(con, group_key, verdict, by, _time(path, number,
                                                     entry.get("decided_at")), json.dumps(members),
                                                     canonical if isinstance(canonical, str) else None)
