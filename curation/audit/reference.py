"""An audit without listening: turn human-verified reference labels (e.g. AudioSet's) into automatic verdicts
on what a captioner's captions assert.

Place in the flow: a CSV of (clip, machine caption, reference label ids) + the AudioSet ontology -> clips and
ontology-lexicon tags ingested as usual -> a campaign of kind 'reference' whose only annotator is
``reference:<name>`` -> the same statistics and dashboards as a listening audit.

Rules (lexical, stated so that the figures can be read):
- a caption asserts an ontology class when it contains one of the class's names (the name split at ", ",
  parentheses dropped, case-insensitive, whole words, an optional plural "s"/"es");
- an asserted class is *correct* when it is a reference label or an ancestor of one (the caption is less
  specific but true), *unsure* when it is a descendant of a label (the labels are too coarse to tell) or when
  fewer than ``MIN_LABEL_CLIPS`` clips of the file carry it or a descendant as a label (the reference hardly
  speaks about it: AudioSet-eval subsets can lack whole classes such as Speech and Music), and *wrong*
  otherwise;
- a reference label that no asserted class equals, contains or refines is *missed* (an added tag).

AudioSet lists the labels raters verified as present; a class missing from a clip's labels was not verified
absent. "Wrong" therefore means "not among the reference labels", and the precision it gives is a lower bound
on the captioner's real precision (most visibly for classes the labels under-report, such as Speech here).

Example::

    summary = import_reference_audit(con, Path("audioset_eval_gama_joined.csv"), Path("ontology.json"),
                                     captioner="gama", name="gama-audioset-eval")
"""
from __future__ import annotations

import csv
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from curation import store
from curation.audit.campaigns import AuditError
from curation.errors import ManifestError
from curation.ingest.ingest import ingest_path
from curation.store import audit as store_audit

REFERENCE_EXTRACTOR = "audioset-ontology-lexicon"
REQUIRED_COLUMNS = ("ytid", "start_s", "audioset_label_ids", "gama_caption")
# A class the reference labels (itself or a descendant) on fewer clips than this is treated as not covered by
# the reference: e.g. this AudioSet-eval subset labels Speech on 11 of 8,602 clips although captions say
# "speech" on ~1,000, so calling those assertions wrong would measure the label file, not the captioner.
MIN_LABEL_CLIPS = 20


@dataclass(frozen=True)
class Ontology:
    name_of: dict[str, str]  # class id -> tag text (first name, lowercased)
    ancestors: dict[str, frozenset[str]]  # class id -> every ancestor id
    pattern: re.Pattern  # alternation of every synonym, longest first
    class_of_synonym: dict[str, str]


def load_ontology(path: Path) -> Ontology:
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(path, None, None, found=str(exc), found_is_description=True,
                            expected="the AudioSet ontology.json") from None
    parents: dict[str, set[str]] = {}
    for item in classes:
        for child in item.get("child_ids", []):
            parents.setdefault(child, set()).add(item["id"])

    def ancestors_of(class_id: str, seen: frozenset = frozenset()) -> set[str]:
        result = set()
        for parent in parents.get(class_id, ()):
            if parent not in seen:
                result |= {parent} | ancestors_of(parent, seen | {class_id})
        return result

    name_of, synonyms = {}, {}
    for item in classes:
        names = [re.sub(r"\s*\(.*?\)", "", part).strip().lower() for part in item["name"].split(", ")]
        names = [n for n in names if len(n) >= 3]
        if not names:
            continue
        name_of[item["id"]] = names[0]
        for name in names:
            synonyms.setdefault(name, item["id"])  # the first class to claim a name keeps it
    alternation = "|".join(re.escape(s) for s in sorted(synonyms, key=len, reverse=True))
    return Ontology(name_of=name_of, ancestors={cid: frozenset(ancestors_of(cid)) for cid in name_of},
                    pattern=re.compile(rf"\b({alternation})(?:e?s)?\b", re.IGNORECASE),
                    class_of_synonym=synonyms)


def judge(caption: str, label_ids: list[str], ontology: Ontology,
          covered: set[str] | None = None) -> tuple[dict[str, str], list[str]]:
    """({asserted tag: verdict}, [missed label tags]) for one clip, by the rules in the module docstring.
    ``covered``: the classes the reference file can speak about (its labels and their ancestors)."""
    asserted = {ontology.class_of_synonym[m.group(1).lower()] for m in ontology.pattern.finditer(caption)}
    labels = [label for label in label_ids if label in ontology.name_of]
    verdicts = {}
    for class_id in asserted:
        if class_id in labels or any(class_id in ontology.ancestors[label] for label in labels):
            verdict = "correct"
        elif any(label in ontology.ancestors[class_id] for label in labels):
            verdict = "unsure"
        elif covered is not None and class_id not in covered:
            verdict = "unsure"
        else:
            verdict = "wrong"
        verdicts[ontology.name_of[class_id]] = verdict
    missed = [ontology.name_of[label] for label in labels
              if not any(a == label or label in ontology.ancestors[a] or a in ontology.ancestors[label]
                         for a in asserted)]
    return verdicts, sorted(set(missed) - set(verdicts))


@dataclass(frozen=True)
class ReferenceSummary:
    campaign_id: int
    clips: int
    verdicts: int
    missed: int
    skipped_rows: int


def import_reference_audit(con: duckdb.DuckDBPyConnection, csv_path: Path, ontology_path: Path, *,
                           captioner: str, name: str, reference: str = "audioset") -> ReferenceSummary:
    if store_audit.campaign_id_by_name(con, name) is not None:
        raise AuditError(f"a campaign named {name!r} exists already; choose another name")
    ontology = load_ontology(ontology_path)
    with open(csv_path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(csv_path, 1, missing[0], found=f"columns {reader.fieldnames}",
                                found_is_description=True, expected=f"the columns {', '.join(REQUIRED_COLUMNS)}")
        source_rows = list(reader)
    label_clips: dict[str, int] = {}
    for row in source_rows:
        labels = {label for label in row["audioset_label_ids"].split(";") if label in ontology.name_of}
        for class_id in labels | {a for label in labels for a in ontology.ancestors[label]}:
            label_clips[class_id] = label_clips.get(class_id, 0) + 1
    covered = {class_id for class_id, clips in label_clips.items() if clips >= MIN_LABEL_CLIPS}
    rows, judged = [], []
    for row in source_rows:
        clip_id = f"{row['ytid']}_{row['start_s']}"
        verdicts, missed = judge(row["gama_caption"], row["audioset_label_ids"].split(";"), ontology, covered)
        rows.append({"id": clip_id, "caption": row["gama_caption"], "captioner": captioner,
                     "tags": sorted(verdicts), "source": f"{reference}-reference", "duration": 10.0})
        judged.append((clip_id, verdicts, missed))
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "reference.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        ingest = ingest_path(con, manifest, extractor=REFERENCE_EXTRACTOR)
    keys = store_audit.clip_keys_of(con, [clip_id for clip_id, _, _ in judged])
    annotator = f"reference:{reference}"
    verdict_rows = pd.DataFrame([(keys[c], tag, v) for c, vs, _ in judged for tag, v in vs.items()],
                                columns=["clip_key", "tag", "verdict"])
    missed_rows = pd.DataFrame([(keys[c], tag) for c, _, ms in judged for tag in ms], columns=["clip_key", "tag"])
    slots = pd.DataFrame({"position": range(1, len(judged) + 1), "clip_key": [keys[c] for c, _, _ in judged],
                          "stratum": "reference"})
    with store_audit.WRITE_LOCK, store.transaction(con):  # campaign ids are max + 1: one writer at a time
        campaign_id = store_audit.insert_reference_campaign(
            con, name=name, by=annotator, annotator=annotator, design={
                "kind": "reference labels", "csv": str(csv_path), "ontology": str(ontology_path),
                "captioner": captioner, "rules": "asserted = ontology names in the caption; correct = label or "
                "ancestor of a label; unsure = descendant of a label; missed = label not covered"},
            slots=slots, verdicts=verdict_rows, missed=missed_rows)
    return ReferenceSummary(campaign_id=campaign_id, clips=len(judged), verdicts=len(verdict_rows),
                            missed=len(missed_rows), skipped_rows=ingest.skipped_rows)
