"""Fuzz: 1,000 generated manifests (Lhotse cuts, flat JSONL, CSV; plain or gzip) with mutated fields, wrong types,
huge and control-character strings, broken bytes, truncated lines and duplicate ids. Every ingest either succeeds
or raises a typed error (UtsError), never anything else, and a failed ingest leaves every table exactly as it
was (no partial write). Both bad-row policies are exercised."""
from __future__ import annotations

import csv
import gzip
import io
import json
import time

import pytest
from helpers import make_cut, table_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curation import store
from curation.errors import UtsError
from curation.ingest.ingest import ingest_path

N_EXAMPLES = 1000
IDS = ["a", "b", "c", "d", "Y--0w1YA1Hm4_30.000", "<script>alert(1)</script>", "../../etc/passwd", "x'; --"]
STRANGE_TEXT = ["", " ", "\x00", "\x1b[31m", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1))",
                "é" * 3, "\ud83d\ude00", "\u202e", "a" * 60_000, "\n", "'; DROP TABLE clips; --", "%_\"\\"]
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                         st.sampled_from(STRANGE_TEXT), st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                   st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=4)), max_leaves=8)

LHOTSE_FIELDS = [("id",), ("duration",), ("supervisions",), ("recording",), ("supervisions", 0, "custom"),
                 ("supervisions", 0, "custom", "audio_tag"), ("supervisions", 0, "custom", "caption"),
                 ("supervisions", 0, "custom", "original_caption"), ("supervisions", 0, "custom", "domain"),
                 ("recording", "sources"), ("recording", "sources", 0, "source"), ("recording", "sampling_rate")]
FLAT_FIELDS = ["id", "audio_path", "caption", "tags", "source", "duration"]


def _set(record, path, value, delete: bool) -> None:
    target = record
    for key in path[:-1]:
        if isinstance(target, dict) and key in target:
            target = target[key]
        elif isinstance(target, list) and isinstance(key, int) and len(target) > key:
            target = target[key]
        else:
            return
    last = path[-1]
    if isinstance(target, dict):
        if delete:
            target.pop(last, None)
        else:
            target[last] = value
    elif isinstance(target, list) and isinstance(last, int) and len(target) > last:
        target[last] = value


@st.composite
def manifests(draw):
    kind = draw(st.sampled_from(["lhotse", "flat_jsonl", "csv"]))
    n = draw(st.integers(0, 4))
    records = []
    for _ in range(n):
        clip_id = draw(st.sampled_from(IDS))
        if kind == "lhotse":
            record = make_cut(clip_id, tags=draw(st.lists(st.sampled_from(["drum", "music", "rain", "é"]),
                                                          max_size=3)),
                              duration=draw(st.sampled_from([10.0, 0.5, 1e6])))
            fields = LHOTSE_FIELDS
        else:
            record = {"id": clip_id, "audio_path": "a.wav", "caption": "a dog barks", "tags": "dog;bark",
                      "source": "audioset", "duration": 10}
            fields = [(f,) for f in FLAT_FIELDS]
        for _ in range(draw(st.integers(0, 3))):
            _set(record, draw(st.sampled_from(fields)), draw(json_values), delete=draw(st.booleans()))
        records.append(record)
    if kind == "csv":
        buffer = io.StringIO()
        columns = draw(st.sampled_from([FLAT_FIELDS, ["id", "caption"], ["caption"], FLAT_FIELDS + ["extra"]]))
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        if draw(st.booleans()) or not records:
            writer.writeheader()
        for record in records:
            writer.writerow({k: (v if isinstance(v, str) else json.dumps(v)) for k, v in record.items()
                             if k in columns})
        data = buffer.getvalue().encode("utf-8", "surrogatepass")
    else:
        lines = []
        for record in records:
            try:
                lines.append(json.dumps(record, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass"))
            except ValueError:  # nan etc. are still written by json.dumps; only unencodable text lands here
                lines.append(b"{}")
        data = b"\n".join(lines) + (b"\n" if draw(st.booleans()) else b"")
    # Byte-level damage: insert random bytes, truncate, or prepend a BOM.
    damage = draw(st.sampled_from(["none", "none", "insert", "truncate", "bom", "duplicate"]))
    if damage == "insert" and data:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif damage == "truncate" and data:
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif damage == "bom":
        data = b"\xef\xbb\xbf" + data
    elif damage == "duplicate" and data:
        data = data + b"\n" + data
    gz = draw(st.sampled_from(["plain", "plain", "gzip", "fake-gzip"]))
    return kind, data, gz, draw(st.sampled_from(["raise", "raise", "skip"]))


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    con = store.connect(folder / "fuzz.duckdb")
    # Data that must survive every failed ingest untouched.
    from helpers import write_jsonl

    ingest_path(con, write_jsonl(folder / "seed.jsonl", [make_cut("seed-1"), make_cut("seed-2", tags=("rain",))]))
    yield folder, con
    con.close()
    if COUNTS["cases"]:  # the figure bench/trust_scale.py quotes (shown with -s)
        print(f"fuzz: {COUNTS['cases']} cases, {COUNTS['ok']} ingested, {COUNTS['typed_errors']} typed errors, "
              f"{time.perf_counter() - COUNTS['started']:.1f} s")
        assert COUNTS["cases"] >= N_EXAMPLES and COUNTS["ok"] > 0 and COUNTS["typed_errors"] > 0


COUNTS = {"cases": 0, "ok": 0, "typed_errors": 0, "started": None}


@settings(max_examples=N_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(case=manifests())
def test_ingest_of_fuzzed_manifests_raises_only_typed_errors_and_never_writes_partially(fuzz_store, case):
    folder, con = fuzz_store
    COUNTS["started"] = COUNTS["started"] or time.perf_counter()
    kind, data, gz, policy = case
    suffix = {"lhotse": ".jsonl", "flat_jsonl": ".jsonl", "csv": ".csv"}[kind]
    path = folder / f"case{suffix}{'' if gz == 'plain' else '.gz'}"
    path.write_bytes(gzip.compress(data, mtime=0) if gz == "gzip" else data)
    before = table_snapshot(con)
    COUNTS["cases"] += 1
    try:
        ingest_path(con, path, on_bad_row=policy)
    except UtsError:
        COUNTS["typed_errors"] += 1
        assert table_snapshot(con) == before, f"a failed ingest of {kind} ({gz}, {policy}) changed the store"
    else:
        COUNTS["ok"] += 1
    # Whatever happened, the connection is usable and no transaction is left open.
    assert con.execute("SELECT count(*) FROM clips WHERE clip_id LIKE 'seed-%'").fetchall() == [(2,)]
