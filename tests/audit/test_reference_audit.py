"""Automatic verdicts from reference labels: the lexical rules on a small ontology, and the real GAMA file."""
from __future__ import annotations

import json

import pytest
from helpers import SHARED_DATA

from curation.audit.reference import judge, load_ontology
from curation.audit.report import campaign_report
from curation.cli.main import main
from curation.store import audit as store_audit

ONTOLOGY = [
    {"id": "/v", "name": "Vehicle", "child_ids": ["/c", "/m"]},
    {"id": "/c", "name": "Car", "child_ids": []},
    {"id": "/m", "name": "Motorcycle", "child_ids": []},
    {"id": "/d", "name": "Dog", "child_ids": []},
    {"id": "/w", "name": "Water tap, faucet", "child_ids": []},
]


@pytest.fixture
def ontology(tmp_path):
    path = tmp_path / "ontology.json"
    path.write_text(json.dumps(ONTOLOGY), encoding="utf-8")
    return load_ontology(path)


def test_judging_rules(ontology):
    verdicts, missed = judge("A vehicle passes, then dogs bark near a faucet.", ["/c", "/w"], ontology)
    # vehicle: ancestor of the Car label -> correct; dog: no label -> wrong; faucet (synonym of Water tap) -> correct.
    assert verdicts == {"vehicle": "correct", "dog": "wrong", "water tap": "correct"}
    assert missed == []  # Car is covered by the less specific "vehicle"
    verdicts, missed = judge("A motorcycle revs.", ["/v", "/d"], ontology)
    assert verdicts == {"motorcycle": "unsure"}  # more specific than the Vehicle label: can't tell
    assert missed == ["dog"]
    verdicts, _ = judge("A dog barks.", ["/c"], ontology, covered={"/c", "/v"})
    assert verdicts == {"dog": "unsure"}  # the reference never labels dogs: not evidence against the caption


GAMA = SHARED_DATA / "captions" / "gama_llm_captions" / "audioset_eval_gama_joined.csv"


@pytest.mark.skipif(not GAMA.exists(), reason="../shared/data (GAMA captions with AudioSet labels) is absent")
def test_gama_reference_audit_end_to_end(db_path, capsys):
    assert main(["audit", "import-reference", str(GAMA), "--ontology", str(SHARED_DATA / "ontology" / "ontology.json"),
                 "--captioner", "gama", "--name", "gama", "--db", str(db_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == 8602 and summary["verdicts"] > 20_000
    assert main(["audit", "report", "--campaign", "gama", "--min-judged", "50", "--db", str(db_path)]) == 0
    table = json.loads(capsys.readouterr().out)
    by_tag = {row["tag"]: row for row in table}
    # Labels that AudioSet verifies well are confirmed; "speech" is under-labelled in this subset.
    assert by_tag["organ"]["precision"] > 0.7 and by_tag["speech"]["precision"] < 0.1
    from curation import store

    con = store.connect(db_path)
    report = campaign_report(con, "gama")
    assert set(store_audit.verdict_frame(con)["annotator"]) == {"reference:audioset"}
    assert report.flags["biased"].any()
    con.close()
