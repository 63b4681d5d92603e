"""Curation decisions: an append-only log (who, when, what, why) and its replay into the canonical tag state.

Place in the flow: ingest -> decide (this module) -> vocabulary (ranking, coverage) -> export.
Actions: merge (tags -> target, new or existing), rename (one tag -> a new name), prune / restore (exclusion
from every vocabulary), per-clip add / remove of a tag, use_extractors (whose tag rows feed the vocabulary: a
tagging job adds a new extractor's rows to the corpus, and only this decision lets them into the ranking), and
undo of any earlier decision (itself a decision: nothing is ever deleted, and undoing an undo redoes). Chains resolve (A->B then B->C sends A to C); a merge
that would close a cycle is refused.

Example::

    record_decision(con, Decision.merge(["drum", "drums"], into="drum"), by="ana", reason="plural")
    state = replay(list_decisions(con))
    state.canonical("drums")   # -> "drum"
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Sequence

import duckdb

from curation import store
from curation.admin import permissions
from curation.errors import UtsError
from curation.ingest.tag_text import normalize_tag, tag_text_problem
from curation.store import decisions as store_decisions
from curation.store import vocabulary as store_vocabulary

ACTIONS = ("merge", "rename", "prune", "restore", "clip_add", "clip_remove", "use_extractors", "undo")


class DecisionError(UtsError, ValueError):
    """A decision that cannot be applied (unknown tag, cycle, nothing to undo, ...)."""


def _spelled(tag):
    # Non-text is left for _check to refuse with a message naming it.
    return normalize_tag(tag) if isinstance(tag, str) else tag


@dataclass(frozen=True)
class Decision:
    """What a curator decided, before it is stored (no id, no time yet). Tag text the decision creates (a merge
    target, a new name, a tag added to a clip) is spelled by ``normalize_tag``, whichever route made it (app, CLI,
    API); tags it refers to (what is merged, pruned or removed) are taken as they are stored."""

    action: str
    payload: dict

    @staticmethod
    def merge(tags: Iterable[str], *, into: str) -> "Decision":
        return Decision("merge", {"tags": list(tags), "into": _spelled(into)})

    @staticmethod
    def rename(tag: str, *, to: str) -> "Decision":
        return Decision("rename", {"tags": [tag], "into": _spelled(to)})

    @staticmethod
    def prune(tags: Iterable[str]) -> "Decision":
        return Decision("prune", {"tags": list(tags)})

    @staticmethod
    def restore(tags: Iterable[str]) -> "Decision":
        return Decision("restore", {"tags": list(tags)})

    @staticmethod
    def clip_add(clip_id: str, tag: str) -> "Decision":
        return Decision("clip_add", {"clip_id": clip_id, "tag": _spelled(tag)})

    @staticmethod
    def clip_remove(clip_id: str, tag: str) -> "Decision":
        return Decision("clip_remove", {"clip_id": clip_id, "tag": tag})

    @staticmethod
    def use_extractors(extractors: Iterable[str]) -> "Decision":
        """From now on only these extractors' tag rows feed the vocabulary (until undone or replaced)."""
        return Decision("use_extractors", {"extractors": sorted(set(extractors))})

    @staticmethod
    def undo(decision_id: int) -> "Decision":
        return Decision("undo", {"decision_id": int(decision_id)})


@dataclass(frozen=True)
class DecisionRecord:
    decision_id: int
    decided_at: datetime
    decided_by: str
    action: str
    payload: dict
    reason: str | None

    def describe(self) -> str:
        p = self.payload
        if self.action in ("merge", "rename"):
            return f"{self.action} {', '.join(p['tags'])} -> {p['into']}"
        if self.action in ("prune", "restore"):
            return f"{self.action} {', '.join(p['tags'])}"
        if self.action in ("clip_add", "clip_remove"):
            return f"{'add' if self.action == 'clip_add' else 'remove'} {p['tag']} on clip {p['clip_id']}"
        if self.action == "use_extractors":
            return f"use the tags of {', '.join(p['extractors'])}"
        return f"undo #{p['decision_id']}"


@dataclass(frozen=True)
class CurationState:
    """The result of replaying the log: how every tag text maps to its canonical tag, and what is excluded."""

    parent: dict[str, str] = field(default_factory=dict)  # tag -> tag it was merged into (one step)
    pruned: frozenset[str] = frozenset()
    clip_adds: frozenset[tuple[str, str]] = frozenset()  # (clip_id, canonical tag)
    clip_removes: frozenset[tuple[str, str]] = frozenset()
    active_ids: frozenset[int] = frozenset()  # decisions in effect (not undone)
    last_decision_id: int = 0
    # Extractors whose tag rows feed the vocabulary; None (no use_extractors decision in effect): all of them.
    extractors: frozenset[str] | None = None
    skipped: tuple[tuple[int, str], ...] = ()  # (decision_id, why) for decisions replay could not apply

    def canonical(self, tag: str) -> str:
        seen = set()
        while tag in self.parent:
            if tag in seen:  # replay never stores a cycle; this guards a hand-edited log
                raise DecisionError(f"merge cycle through {tag!r} in the decision log")
            seen.add(tag)
            tag = self.parent[tag]
        return tag

    def canonical_map(self, tags: Iterable[str]) -> dict[str, str]:
        return {tag: self.canonical(tag) for tag in tags}

    def members(self) -> dict[str, list[str]]:
        """canonical tag -> the tags merged into it (not itself)."""
        groups: dict[str, list[str]] = {}
        for tag in self.parent:
            groups.setdefault(self.canonical(tag), []).append(tag)
        return {canon: sorted(tags) for canon, tags in groups.items()}

    def is_pruned(self, canonical_tag: str) -> bool:
        return canonical_tag in self.pruned


def decision_log_frame(records: list[DecisionRecord], state: CurationState):
    """The log as a table, newest first, with whether each decision is still in effect: ``status`` says it in
    words (in effect / undone by #n / undo of #n / no effect), first, so that an undone row never looks active."""
    import pandas as pd

    undone_by = {r.payload["decision_id"]: r.decision_id for r in records
                 if r.action == "undo" and r.decision_id in state.active_ids}
    no_effect = {decision_id for decision_id, _why in state.skipped}

    def status(r: DecisionRecord) -> str:
        if r.action == "undo":
            return f"undo of #{r.payload['decision_id']}" if r.decision_id in state.active_ids else "undone"
        if r.decision_id not in state.active_ids:
            return f"undone by #{undone_by[r.decision_id]}" if r.decision_id in undone_by else "undone"
        return "no effect" if r.decision_id in no_effect else "in effect"

    return pd.DataFrame({
        "decision_id": [r.decision_id for r in records], "status": [status(r) for r in records],
        "when": [r.decided_at for r in records],
        "by": [r.decided_by for r in records], "what": [r.describe() for r in records],
        "reason": [r.reason or "" for r in records],
        "in_effect": [r.decision_id in state.active_ids and r.action != "undo" for r in records],
    }).sort_values("decision_id", ascending=False, ignore_index=True)


def _active_decisions(records: list[DecisionRecord]) -> set[int]:
    """A decision is active unless an active later undo targets it (undo of an undo redoes)."""
    active: set[int] = set()
    undone: set[int] = set()
    for record in sorted(records, key=lambda r: r.decision_id, reverse=True):
        if record.decision_id in undone:
            continue
        active.add(record.decision_id)
        if record.action == "undo":
            undone.add(record.payload["decision_id"])
    return active


def replay(records: list[DecisionRecord]) -> CurationState:
    """Apply every active decision in order. Pure: the same log gives the same state."""
    active = _active_decisions(records)
    parent: dict[str, str] = {}
    pruned: set[str] = set()
    clip_edits: list[tuple[str, str, str]] = []  # (clip_id, tag as named, "add" | "remove"), in log order
    skipped: list[tuple[int, str]] = []
    extractors: frozenset[str] | None = None

    def resolve(tag: str) -> str:
        while tag in parent:
            tag = parent[tag]
        return tag

    for record in sorted(records, key=lambda r: r.decision_id):
        if record.decision_id not in active or record.action == "undo":
            continue
        p = record.payload
        if record.action in ("merge", "rename"):
            target = resolve(p["into"])
            sources = {resolve(tag) for tag in p["tags"]} - {target}
            if not sources:
                # Only a redo (undo of an undo) can get here: the merge now has no effect or would close a cycle.
                skipped.append((record.decision_id, f"no effect: every tag already resolves to {target!r}"))
                continue
            for source in sources:
                parent[source] = target
        elif record.action == "prune":
            pruned.update(p["tags"])
        elif record.action == "restore":
            pruned.difference_update(p["tags"])
        elif record.action in ("clip_add", "clip_remove"):
            clip_edits.append((p["clip_id"], p["tag"], "add" if record.action == "clip_add" else "remove"))
        elif record.action == "use_extractors":
            extractors = frozenset(p["extractors"])  # the latest choice in effect wins
    # Per-clip edits and prunes name tags as the curator saw them; they follow later merges, and for one clip
    # and canonical tag the latest edit wins.
    last_edit: dict[tuple[str, str], str] = {}
    for clip_id, tag, op in clip_edits:
        last_edit[(clip_id, resolve(tag))] = op
    return CurationState(
        parent=parent,
        pruned=frozenset(resolve(tag) for tag in pruned),
        clip_adds=frozenset(key for key, op in last_edit.items() if op == "add"),
        clip_removes=frozenset(key for key, op in last_edit.items() if op == "remove"),
        active_ids=frozenset(active),
        last_decision_id=max((r.decision_id for r in records), default=0),
        extractors=extractors,
        skipped=tuple(skipped),
    )


def list_decisions(con: duckdb.DuckDBPyConnection, up_to: int | None = None) -> list[DecisionRecord]:
    """The log in order; with ``up_to``, only the decisions up to and including that id (the vocabulary version an
    export or a run was made from: replaying these gives the state as it was then)."""
    return [DecisionRecord(decision_id=row[0], decided_at=row[1], decided_by=row[2], action=row[3],
                           payload=json.loads(row[4]), reason=row[5])
            for row in store_decisions.decision_rows(con, up_to=up_to)]


def _check(con: duckdb.DuckDBPyConnection, decision: Decision, records: list[DecisionRecord]) -> None:
    """Refuse what cannot be applied, naming the tag or decision and what was expected."""
    if decision.action not in ACTIONS:
        raise DecisionError(f"unknown action {decision.action!r}; expected one of {ACTIONS}")
    p = decision.payload
    state = replay(records)
    known = store_vocabulary.known_tag_texts(con)

    def require_known(tag: str) -> None:
        if not isinstance(tag, str) or not tag.strip():
            raise DecisionError(f"tag {tag!r}: expected a non-empty tag text")
        if tag not in known:
            close = sorted(t for t in known if tag.lower().replace("_", "-") in t.lower().replace("_", "-"))[:5]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise DecisionError(f"unknown tag {tag!r}: expected a tag of this corpus{hint}")

    if decision.action in ("merge", "rename"):
        tags, target = p.get("tags") or [], p.get("into")
        if not tags:
            raise DecisionError(f"{decision.action}: expected at least one tag to {decision.action}")
        if not isinstance(target, str) or not target.strip() or target != target.strip():
            raise DecisionError(f"{decision.action}: target {target!r}: expected a non-empty tag text without "
                                "surrounding spaces")
        if (problem := tag_text_problem(target)) is not None:
            raise DecisionError(f"{decision.action}: target {target!r}: expected {problem}")
        for tag in tags:
            require_known(tag)
        target_canon = state.canonical(target)
        for tag in tags:
            if tag == target:
                continue  # naming the target among the tags is allowed and harmless
            if state.canonical(tag) == target_canon:
                if target != target_canon and tag in _chain(state, target):
                    raise DecisionError(
                        f"{decision.action} {tag!r} into {target!r} would close a cycle: {target!r} is already "
                        f"merged into {target_canon!r}; undo that merge first")
                raise DecisionError(f"{decision.action}: {tag!r} already resolves to {target_canon!r}; nothing to do")
        if all(tag == target for tag in tags):
            raise DecisionError(f"{decision.action}: cannot merge {target!r} into itself")
        if target_canon in state.pruned:
            # Folding tags into a pruned one silently drops them from every vocabulary (a lasso of 26 tags into a
            # pruned "studio" would): a merge target is never a pruned tag.
            raise DecisionError(f"{decision.action} into {target!r}: {target_canon!r} is pruned, so every merged tag "
                                "would leave the vocabulary with it; restore it first, or prune the tags instead")
        pruned_sources = sorted({state.canonical(tag) for tag in tags} & state.pruned)
        if pruned_sources:
            # A prune follows later merges: merging a pruned tag would prune the target too.
            raise DecisionError(f"{decision.action} into {target!r}: {', '.join(map(repr, pruned_sources))} "
                                f"{'is' if len(pruned_sources) == 1 else 'are'} pruned, and merging "
                                f"{'it' if len(pruned_sources) == 1 else 'them'} would prune {target!r} too; "
                                "leave pruned tags out of the merge, or restore them first")
    elif decision.action in ("prune", "restore"):
        tags = p.get("tags") or []
        if not tags:
            raise DecisionError(f"{decision.action}: expected at least one tag")
        for tag in tags:
            require_known(tag)
            canon = state.canonical(tag)
            if decision.action == "prune" and canon in state.pruned:
                raise DecisionError(f"prune {tag!r}: {canon!r} is already pruned")
            if decision.action == "restore" and canon not in state.pruned:
                raise DecisionError(f"restore {tag!r}: {canon!r} is not pruned")
    elif decision.action in ("clip_add", "clip_remove"):
        clip_id, tag = p.get("clip_id"), p.get("tag")
        if not store_vocabulary.clip_exists(con, clip_id):
            raise DecisionError(f"clip {clip_id!r}: expected the id of a clip in this corpus")
        if not isinstance(tag, str) or not tag.strip() or tag != tag.strip():
            raise DecisionError(f"tag {tag!r}: expected a non-empty tag text without surrounding spaces")
        if decision.action == "clip_add" and (problem := tag_text_problem(tag)) is not None:
            raise DecisionError(f"clip_add {tag!r}: expected {problem}")
        if decision.action == "clip_remove":
            require_known(tag)
    elif decision.action == "use_extractors":
        names = p.get("extractors")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise DecisionError(f"use_extractors {names!r}: expected a non-empty list of extractor names")
        known_extractors = store_vocabulary.extractor_names(con)
        unknown = sorted(set(names) - known_extractors)
        if unknown:
            raise DecisionError(f"use_extractors: unknown extractor {', '.join(map(repr, unknown))}: expected one "
                                f"of {', '.join(sorted(known_extractors)) or '(none: the corpus has no tags yet)'}")
        if state.extractors is not None and set(names) == state.extractors:
            raise DecisionError(f"use_extractors: {', '.join(sorted(names))} already feed the vocabulary; "
                                "nothing to do")
    elif decision.action == "undo":
        target_id = p.get("decision_id")
        ids = {r.decision_id for r in records}
        if target_id not in ids:
            raise DecisionError(f"undo #{target_id}: expected the id of an earlier decision "
                                f"(1..{max(ids, default=0)})")
        if target_id not in state.active_ids:
            raise DecisionError(f"undo #{target_id}: that decision is already undone")
        # Redoing via undo-of-undo must not re-open a cycle.
        trial = records + [DecisionRecord(max(ids) + 1, datetime.now(), "-", "undo", {"decision_id": target_id}, None)]
        if len(replay(trial).skipped) > len(state.skipped):
            raise DecisionError(f"undo #{target_id} would re-activate a merge that now closes a cycle")


def _chain(state: CurationState, tag: str) -> list[str]:
    chain = [tag]
    while chain[-1] in state.parent:
        chain.append(state.parent[chain[-1]])
    return chain


def record_decision(con: duckdb.DuckDBPyConnection, decision: Decision, *, by: str, reason: str | None = None,
                    also=None) -> DecisionRecord:
    """Check and append one decision (one transaction); new target names are interned as tags.

    ``also(con, decision_id)`` runs inside the same transaction, for writes that belong to the decision
    (e.g. the verdict on the merge suggestion it accepts): both land or neither does. In the app the signed-in
    actor must have the "decide" ability (curation.admin.permissions), and the decision is recorded under their name.
    """
    return record_decisions(con, [(decision, reason, also)], by=by)[0]


def record_decisions(con: duckdb.DuckDBPyConnection, items: Sequence[tuple[Decision, str | None, object]], *,
                     by: str) -> list[DecisionRecord]:
    """Several decisions as ONE write: each ``(decision, reason, also or None)`` is checked against the log
    including the earlier items, appended, and its ``also(con, decision_id)`` run; all of them land or none does
    (e.g. a bulk accept of merge suggestions whose last merge would close a cycle writes nothing)."""
    by = permissions.authorize("decide", by)
    if not isinstance(by, str) or not by.strip():
        raise DecisionError("every decision names who made it: expected a non-empty --by / display name")
    by = by.strip()
    decision_ids = []
    with store_decisions.WRITE_LOCK, store.transaction(con):
        for decision, reason, also in items:
            _check(con, decision, list_decisions(con))  # re-read: the log holds this call's earlier items too
            new_texts = []
            if decision.action in ("merge", "rename"):
                new_texts.append(decision.payload["into"])
            if decision.action == "clip_add":
                new_texts.append(decision.payload["tag"])
            store_vocabulary.intern_tags(con, new_texts)
            decision_id = store_decisions.append_decision(con, decision.action, json.dumps(decision.payload), by,
                                                          reason)
            if also is not None:
                also(con, decision_id)
            decision_ids.append(decision_id)
    by_id = {record.decision_id: record for record in list_decisions(con)}
    return [by_id[decision_id] for decision_id in decision_ids]
