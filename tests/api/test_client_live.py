"""curation.client against a live `serve`: the library's verbs from a notebook or script, tables as DataFrames."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from curation import store
from curation.client import ApiError, Client


def test_the_client_curates_exports_and_audits_through_a_live_server(serve, tmp_path):
    api = Client(db=serve.db)  # found from the file the server wrote beside the database
    assert api.url == serve.url
    assert api.stats()["clips"] == 60
    ranking = api.vocabulary(k=10)
    assert isinstance(ranking, pd.DataFrame) and list(ranking["rank"]) == list(range(1, 11))
    assert {"tag", "score", "df", "in_top_k", "members"} <= set(ranking.columns)
    record = api.merge(["dog", "dogs"], into="dog", by="ana", reason="plural")
    assert record["description"] == "merge dog, dogs -> dog"
    log = api.decisions()
    assert list(log["decided_by"]) == ["ana"] and bool(log["in_effect"].iloc[0])
    with pytest.raises(ApiError) as refused:
        api.merge(["dog", "dogs"], into="dog", by="ana")
    assert refused.value.status == 400 and "already resolves" in str(refused.value)
    api.undo(record["decision_id"], by="ana")
    assert list(api.decisions()["in_effect"]) == [False, False]

    coverage = api.coverage(ks=[5, 10])
    assert list(coverage["k"]) == [5, 10]
    export = api.export(5, by="ana")
    files = api.download_export(export["export_id"], tmp_path / "downloaded")
    labels = json.loads((tmp_path / "downloaded" / "label_5.json").read_text())
    assert len(labels) == 5 and any(path.name.endswith(".jsonl.gz") for path in files)
    assert list(api.exports()["export_id"]) == [export["export_id"]]

    campaign = api.create_campaign("client", size=2, annotators=1, by="ana")
    item = api.next_clip(campaign["campaign_id"], annotator="bo")
    api.submit_verdicts(campaign["campaign_id"], item["clip_id"], {t: "correct" for t in item["tags"]},
                        annotator="bo")
    report = api.audit_report(campaign["campaign_id"])
    assert set(report["precision"]["tag"]) == set(item["tags"])
    assert api.runs().empty


def test_the_client_says_when_no_server_holds_the_database(demo_db):
    with pytest.raises(ApiError, match="none holds"):
        Client(db=demo_db)
    con = store.connect(demo_db)  # and the database is free for local use
    con.close()
