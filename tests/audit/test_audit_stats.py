"""Audit statistics: every number checked against a hand computation (in the comments), scikit-learn (kappa) or a
published example (Krippendorff's alpha); empty inputs give empty frames with the documented columns."""
from __future__ import annotations

import math
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from curation.audit.stats import (
    ALPHA_COLUMNS,
    BIAS_COLUMNS,
    MISS_RATE_COLUMNS,
    OVER_ASSERTION_COLUMNS,
    PAIRWISE_KAPPA_COLUMNS,
    QUALITY_COLUMNS,
    TAG_PRECISION_COLUMNS,
    AuditStatsError,
    alpha_by_tag,
    alpha_overall,
    annotator_quality,
    caption_length_band,
    cohen_kappa,
    flag_biased_tags,
    frequency_band,
    hallucination_rate_by,
    krippendorff_alpha_nominal,
    mention_pattern,
    miss_rate,
    over_assertion,
    pairwise_kappa,
    tag_precision,
    wilson_interval,
)
from curation.errors import UtsError

NAN = float("nan")


def verdict_table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["clip_id", "annotator", "tag", "verdict"])


def same(x: float, y: float) -> bool:
    return (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Wilson
# ---------------------------------------------------------------------------------------------------------------
def test_wilson_hand_computed():
    # 8/10, z = 1.96: p = 0.8, z²/n = 0.38416, denominator 1.38416; centre = (0.8 + 0.19208) / 1.38416 = 0.71682;
    # half = 1.96·sqrt(0.016 + 0.009604) / 1.38416 = 0.22657 -> (0.4902, 0.9433).
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    # 0/10: low is exactly 0, high = (z²/n) / (1 + z²/n) = 0.38416 / 1.38416 = 0.2775.
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and round(high, 4) == 0.2775
    # 8/8 stays informative (Wald would give [1, 1]): low = 1 / (1 + z²/8) = 0.6756.
    low, high = wilson_interval(8, 8)
    assert high == 1.0 and round(low, 4) == 0.6756
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(8.0, 10.0) == wilson_interval(8, 10)       # pandas sums arrive as floats


@pytest.mark.parametrize("successes, n", [(11, 10), (-1, 3), (1.5, 3), (True, 3), (0, -1)])
def test_wilson_refuses_impossible_counts(successes, n):
    with pytest.raises(AuditStatsError, match="wilson_interval"):
        wilson_interval(successes, n)


@given(st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_estimate_and_is_symmetric(case):
    successes, n = case
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= high <= 1.0
    if n:
        assert low <= successes / n <= high
    # Counting failures instead of successes mirrors the interval.
    mirrored = wilson_interval(n - successes, n)
    assert mirrored[0] == pytest.approx(1 - high, abs=1e-12) and mirrored[1] == pytest.approx(1 - low, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Precision, miss rate
# ---------------------------------------------------------------------------------------------------------------
VERDICTS = verdict_table([
    ("c1", "ana", "dog", "correct"),
    ("c1", "bo", "dog", "correct"),
    ("c2", "ana", "dog", "wrong"),
    ("c2", "bo", "dog", "unsure"),
    ("c1", "ana", "rain", "unsure"),
    ("c3", "ana", "studio", "wrong"),
    ("c3", "bo", "studio", "correct"),
    ("c3", "bo", "studio", "wrong"),      # same (clip, annotator, tag) again: the re-judgement replaces "correct"
])


def test_tag_precision_hand_computed():
    table = tag_precision(VERDICTS)
    assert tuple(table.columns) == TAG_PRECISION_COLUMNS
    assert table["tag"].tolist() == ["dog", "rain", "studio"]
    dog, rain, studio = (table.iloc[i] for i in range(3))
    # dog: correct, correct, wrong judged; one unsure -> 2/3 over 2 clips.
    assert (dog.judged, dog.correct, dog.wrong, dog.unsure, dog.clips) == (3, 2, 1, 1, 2)
    assert dog.precision == pytest.approx(2 / 3)
    # Wilson 2/3: centre = (0.6667 + 0.6403) / 2.2805 = 0.5731, half = 1.96·0.4252 / 2.2805 = 0.3654.
    assert (round(dog.precision_low, 4), round(dog.precision_high, 4)) == (0.2077, 0.9385)
    # rain: only "unsure" -> nothing judged: precision undefined, interval uninformative, the unsure counted.
    assert (rain.judged, rain.unsure, rain.clips) == (0, 1, 1)
    assert math.isnan(rain.precision) and (rain.precision_low, rain.precision_high) == (0.0, 1.0)
    # studio: bo's last verdict wins -> wrong, wrong.
    assert (studio.judged, studio.correct, studio.wrong) == (2, 0, 2)
    counts = table[["judged", "correct", "wrong", "unsure", "clips", "precision_low", "precision_high"]]
    assert not counts.isna().any().any()
    assert table["judged"].dtype == np.int64


def test_bad_verdict_tables_name_the_problem():
    with pytest.raises(AuditStatsError, match=r"row 1: column 'verdict'.*'maybe'"):
        tag_precision(verdict_table([("c1", "ana", "dog", "correct"), ("c1", "bo", "dog", "maybe")]))
    with pytest.raises(AuditStatsError, match=r"missing column\(s\) \['verdict'\]"):
        tag_precision(pd.DataFrame({"clip_id": ["c1"], "annotator": ["ana"], "tag": ["dog"]}))
    assert issubclass(AuditStatsError, UtsError) and issubclass(AuditStatsError, ValueError)


def test_miss_rate_hand_computed():
    added = pd.DataFrame([("c1", "ana", "rain"), ("c1", "bo", "rain"), ("c3", "ana", "rain"),
                          ("c3", "ana", "rain")],  # duplicate row: one addition
                         columns=["clip_id", "annotator", "tag"])
    verdicts = pd.concat([VERDICTS, verdict_table([("c2", "ana", "rain", "correct")])])
    table = miss_rate(verdicts, added)
    assert tuple(table.columns) == MISS_RATE_COLUMNS
    # dog: 0 added, 2 correct -> 0/2; rain: 3 added, 1 correct -> 3/4; studio: no correct, no add -> no row.
    assert table["tag"].tolist() == ["dog", "rain"]
    dog, rain = table.iloc[0], table.iloc[1]
    assert (dog.added, dog.correct, dog.miss_rate, dog.clips_added) == (0, 2, 0.0, 0)
    assert (rain.added, rain.correct, rain.miss_rate, rain.clips_added) == (3, 1, 0.75, 2)
    # Wilson 3/4: centre = (0.75 + 0.4802) / 1.9604 = 0.6275, half = 1.96·0.3331 / 1.9604 = 0.3269.
    assert (round(rain.miss_low, 4), round(rain.miss_high, 4)) == (0.3006, 0.9544)
    assert not table.isna().any().any()


# ---------------------------------------------------------------------------------------------------------------
# Bands and hallucination rate by group
# ---------------------------------------------------------------------------------------------------------------
def test_frequency_band_labels():
    bands = frequency_band(pd.Series([0, 1, 9, 10, 99, 100, 1000, 5000, None]))
    assert bands.iloc[:8].tolist() == ["0", "1-9", "1-9", "10-99", "10-99", "100-999", "1000+", "1000+"]
    assert pd.isna(bands.iloc[8])
    assert list(bands.cat.categories) == ["0", "1-9", "10-99", "100-999", "1000+"] and bands.cat.ordered
    assert frequency_band(pd.Series([3, 10, 250]), edges=(10, 100)).tolist() == ["1-9", "10-99", "100+"]
    assert frequency_band([1, 5], edges=(2, 10)).tolist() == ["1", "2-9"]   # a one-value band reads "1"
    assert caption_length_band(pd.Series([0, 7, 15, 39, 40])).tolist() == ["0", "1-9", "10-19", "20-39", "40+"]
    assert len(frequency_band(pd.Series([], dtype=float))) == 0


@pytest.mark.parametrize("values, edges", [([-1], (10,)), (["many"], (10,)), ([3], (10, 5)), ([3], (1, 10))])
def test_bands_refuse_bad_input(values, edges):
    with pytest.raises(AuditStatsError):
        frequency_band(pd.Series(values), edges=edges)


RATE_VERDICTS = verdict_table([
    ("m1", "ana", "reverb", "wrong"), ("m1", "bo", "reverb", "wrong"), ("m2", "ana", "reverb", "wrong"),
    ("m2", "ana", "piano", "correct"), ("m2", "bo", "piano", "unsure"),
    ("s1", "ana", "speech", "correct"), ("s1", "bo", "speech", "correct"),
    ("x9", "ana", "dog", "wrong"),                       # x9 has no attribute row
])
CLIPS = pd.DataFrame({"clip_id": ["m1", "m2", "s1"], "domain": ["music", "music", "speech"],
                      "source": ["studio", "field", "field"], "caption_words": [30, 4, 12]})


def test_hallucination_rate_by_domain_known_groups():
    table = hallucination_rate_by(RATE_VERDICTS, CLIPS, by="domain")
    assert tuple(table.columns) == ("domain", "judged", "wrong", "hallucination_rate", "rate_low", "rate_high",
                                    "clips")
    # music: reverb w, w, w + piano c (the unsure piano verdict is left out) -> 3/4 over 2 clips;
    # speech: 0/2; x9 has no domain -> "(missing)", last, so the groups add up to all 7 judged verdicts.
    assert table["domain"].tolist() == ["music", "speech", "(missing)"]
    assert table["judged"].tolist() == [4, 2, 1] and table["wrong"].tolist() == [3, 0, 1]
    assert table["clips"].tolist() == [2, 1, 1]
    assert table["hallucination_rate"].tolist() == [0.75, 0.0, 1.0]
    assert (round(table.rate_low[0], 4), round(table.rate_high[0], 4)) == (0.3006, 0.9544)  # Wilson 3/4
    assert table.rate_low[1] == 0.0 and not table.isna().any().any()


def test_hallucination_rate_by_bands_keeps_band_order():
    clips = CLIPS.assign(length=caption_length_band(CLIPS["caption_words"], edges=(5, 20)))
    table = hallucination_rate_by(RATE_VERDICTS, clips, by="length")
    # Band order, not text order ("20+" < "5-19" as text): m2 has 4 words, s1 12, m1 30.
    assert table["length"].tolist() == ["1-4", "5-19", "20+", "(missing)"]
    assert table["judged"].tolist() == [2, 2, 2, 1] and table["wrong"].tolist() == [1, 0, 2, 1]
    # Derived from caption_words with the default edges when asked for by name.
    derived = hallucination_rate_by(RATE_VERDICTS, CLIPS, by="caption_length_band")
    assert derived["caption_length_band"].tolist() == ["1-9", "10-19", "20-39", "(missing)"]
    # Per-tag attributes join on tag: df -> frequency band.
    tags = pd.DataFrame({"tag": ["reverb", "piano", "speech", "dog"], "df": [400, 3, 5000, 40]})
    by_band = hallucination_rate_by(RATE_VERDICTS, tags, by="frequency_band")
    assert by_band["frequency_band"].tolist() == ["1-9", "10-99", "100-999", "1000+"]
    assert by_band["wrong"].tolist() == [0, 1, 3, 0] and by_band["judged"].tolist() == [1, 1, 3, 2]
    # A verdicts column needs no attributes.
    by_annotator = hallucination_rate_by(RATE_VERDICTS, None, by="annotator")
    assert by_annotator["annotator"].tolist() == ["ana", "bo"] and by_annotator["judged"].tolist() == [5, 2]


def test_hallucination_rate_by_refuses_unknown_or_ambiguous_attributes():
    with pytest.raises(AuditStatsError, match="'colour'"):
        hallucination_rate_by(RATE_VERDICTS, CLIPS, by="colour")
    clash = pd.concat([CLIPS, CLIPS.iloc[[0]].assign(domain="speech")])
    with pytest.raises(AuditStatsError, match="more than one 'domain'"):
        hallucination_rate_by(RATE_VERDICTS, clash, by="domain")
    # No attributes at all: every verdict is "(missing)", never an exception.
    table = hallucination_rate_by(RATE_VERDICTS, None, by="domain")
    assert table["domain"].tolist() == ["(missing)"] and table["judged"].tolist() == [7]


# ---------------------------------------------------------------------------------------------------------------
# Over-assertion
# ---------------------------------------------------------------------------------------------------------------
OVER_ROWS = pd.DataFrame([
    # generated mentions hi-hat as "hi hat", a human caption as "hihat"
    ("c1", "music", "hi-hat", "A crisp hi hat pattern over drums.", ["drums and a hihat", "a beat"]),
    # generated "Hi-Hats" (case, plural); humans never
    ("c2", "music", "hi-hat", "Open Hi-Hats ring out.", ["a drum kit plays"]),
    # neither: "hatch" must not match "hat"
    ("c3", "music", "hi-hat", "A piano melody; the hi hatch opens.", ["solo piano"]),
    # only the variant "reverberant" in the generated caption; "reverb" in the second human caption
    ("c4", "speech", "reverb", "A man speaks in a reverberant hall.", ["a man talks", "a big hall with REVERB"]),
], columns=["clip_id", "domain", "tag", "generated_caption", "original_captions"])


def test_over_assertion_hand_built_table():
    table = over_assertion(OVER_ROWS, variants={"reverb": ["reverberant", "reverberation"]})
    assert tuple(table.columns) == OVER_ASSERTION_COLUMNS
    # (hi-hat, music): generated c1, c2 -> 2/3; human c1 -> 1/3; over-assertion 1/3.
    # (reverb, speech): generated 1/1 (variant), human 1/1 -> 0. Sorted by over-assertion desc.
    assert table[["tag", "domain"]].values.tolist() == [["hi-hat", "music"], ["reverb", "speech"]]
    hihat, reverb = table.iloc[0], table.iloc[1]
    assert (hihat.clips, hihat.generated_mentions, hihat.human_mentions) == (3, 2, 1)
    assert hihat.generated_share == pytest.approx(2 / 3) and hihat.human_share == pytest.approx(1 / 3)
    assert hihat.over_assertion == pytest.approx(1 / 3)
    assert (reverb.generated_share, reverb.human_share, reverb.over_assertion) == (1.0, 1.0, 0.0)
    # Without the variant the generated caption no longer mentions reverb: -1, now last.
    plain = over_assertion(OVER_ROWS)
    assert plain["tag"].tolist() == ["hi-hat", "reverb"] and plain["over_assertion"].iloc[1] == -1.0


def test_mention_pattern_rules():
    hihat = mention_pattern("hi-hat")
    for text in ["hi hat", "HiHat", "hi-hat", "hi_hat", "a hi-hats groove", "Hi  Hat."]:
        assert hihat.search(text), text
    for text in ["hi hatch", "chi hat", "this hat", "hi"]:
        assert not hihat.search(text), text
    cat = mention_pattern("cat")
    assert cat.search("Cats meow") and not cat.search("concatenate") and not cat.search("scatter")
    assert mention_pattern("bus").search("two buses pass")          # plural "es"
    # "hihat" has no separator to relax: the spaced form needs a variant.
    assert not mention_pattern("hihat").search("a hi hat")
    assert mention_pattern("hihat", ["hi-hat"]).search("a hi hat")
    assert mention_pattern("8-bit").search("an 8 bit chiptune") and mention_pattern("c++").search("C++ talk")
    assert not mention_pattern("").search("anything")


def test_over_assertion_accepts_odd_caption_containers():
    rows = pd.DataFrame([
        ("c1", "music", "drum", "drums", np.array(["a drum solo", "noise"], dtype=object)),
        ("c2", "music", "drum", None, None),
        ("c3", "music", "drum", "nothing", "a drum"),                  # a single string is one caption
        ("c3", "music", "drum", "drums again", ["no"]),                # repeated (clip, domain, tag): first kept
    ], columns=["clip_id", "domain", "tag", "generated_caption", "original_captions"])
    table = over_assertion(rows)
    assert (table.clips[0], table.generated_mentions[0], table.human_mentions[0]) == (3, 1, 2)


def test_over_assertion_ten_thousand_rows_is_fast():
    rng = np.random.default_rng(0)
    tags = [f"tag{i}-word" for i in range(300)]
    n = 10_000
    chosen = rng.choice(len(tags), n)
    rows = pd.DataFrame({
        "clip_id": [f"c{i}" for i in range(n)],
        "domain": rng.choice(["music", "speech", "environment"], n),
        "tag": [tags[i] for i in chosen],
        "generated_caption": [f"a long caption that mentions tag{i} word here" if rng.random() < 0.5
                              else "a long caption about something else entirely" for i in chosen],
        "original_captions": [["human caption one", f"human caption with tag{i}word"] for i in chosen],
    })
    start = time.perf_counter()
    table = over_assertion(rows)
    elapsed = time.perf_counter() - start
    assert table["clips"].sum() == n
    # Every human caption mentions its tag ("tag7word" = "tag7-word" with the separator read as nothing).
    assert (table["human_share"] == 1.0).all()
    assert 0.4 < table["generated_mentions"].sum() / n < 0.6
    assert elapsed < 10.0    # generous: ~0.1 s here; catches only a quadratic or per-row-compile regression


# ---------------------------------------------------------------------------------------------------------------
# Agreement
# ---------------------------------------------------------------------------------------------------------------
def test_cohen_kappa_hand_computed():
    a = ["c", "c", "w", "w", "c"]
    b = ["c", "w", "w", "w", "c"]
    # p_o = 4/5; p_e = (3·2 + 2·3) / 25 = 12/25; kappa = (20 - 12) / (25 - 12) = 8/13 = 0.6154.
    assert cohen_kappa(a, b) == pytest.approx(8 / 13)
    assert cohen_kappa(a, a) == 1.0
    assert math.isnan(cohen_kappa([], []))
    assert math.isnan(cohen_kappa(["c", "c"], ["c", "c"]))      # one label only: p_e = 1, undefined
    with pytest.raises(AuditStatsError, match="one length"):
        cohen_kappa(["c"], ["c", "w"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from("abcd")), min_size=1, max_size=60))
def test_cohen_kappa_matches_scikit_learn(pairs):
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # sklearn warns where kappa is undefined (it returns NaN too)
        expected = cohen_kappa_score(a, b)
    assert same(cohen_kappa(a, b), float(expected))


def test_pairwise_kappa_over_shared_items():
    verdicts = verdict_table(
        [(f"k{i}", "ana", "dog", v) for i, v in enumerate("ccwwc")]
        + [(f"k{i}", "bo", "dog", v) for i, v in enumerate("cwwwc")]
        + [("k0", "bo", "cat", "unsure"), ("k0", "ana", "cat", "correct"),   # unsure: not a shared item
           ("z1", "cy", "dog", "wrong")]                                     # cy shares nothing: no pair
        ).replace({"verdict": {"c": "correct", "w": "wrong"}})
    table = pairwise_kappa(verdicts)
    assert tuple(table.columns) == PAIRWISE_KAPPA_COLUMNS
    assert table[["annotator_a", "annotator_b", "items"]].values.tolist() == [["ana", "bo", 5]]
    assert table.agreement[0] == pytest.approx(0.8) and table.kappa[0] == pytest.approx(8 / 13)


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: nominal data, 4 observers,
# 12 units, missing values (None). Published value: alpha = 0.743.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],     # observer A
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],           # observer B
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],        # observer C
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],           # observer D
]


def test_krippendorff_published_nominal_example():
    units = {u: [row[u] for row in KRIPPENDORFF_2011] for u in range(12)}
    # Unit 12 has one value and is dropped: n = 40 pairable values, n_c = 9, 13, 10, 5, 3 for values 1..5;
    # diagonal coincidences o_cc = 7, 10, 8, 4, 3 (sum 32); Σ n_c(n_c - 1) = 72 + 156 + 90 + 20 + 6 = 344.
    # alpha = ((n-1)·Σo_cc - Σn_c(n_c-1)) / (n(n-1) - Σn_c(n_c-1)) = (39·32 - 344) / (1560 - 344) = 904/1216.
    alpha = krippendorff_alpha_nominal(units)
    assert alpha == pytest.approx(904 / 1216) and round(alpha, 3) == 0.743


def test_krippendorff_published_binary_example():
    # Krippendorff (2011), section A: two observers, ten units, binary. o_01 = 4 disagreeing units,
    # n_0 = 14, n_1 = 6, n = 20: alpha = 1 - (n-1)·o_01 / (n_0·n_1) = 1 - 19·4/84 = 0.095.
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    alpha = krippendorff_alpha_nominal({u: [a[u], b[u]] for u in range(10)})
    assert alpha == pytest.approx(1 - 76 / 84) and round(alpha, 3) == 0.095


def test_krippendorff_edge_cases():
    assert krippendorff_alpha_nominal({1: ["c", "c", "c"], 2: ["w", "w"], 3: ["c", "c"]}) == 1.0
    assert math.isnan(krippendorff_alpha_nominal({1: ["c", "c"], 2: ["c", "c"]}))   # one value: undefined
    assert math.isnan(krippendorff_alpha_nominal({}))
    assert math.isnan(krippendorff_alpha_nominal({1: ["c"], 2: ["w", None]}))       # nothing pairable
    base = {1: ["c", "w"], 2: ["c", "c"], 3: ["w", "w", "c"]}
    # Units with fewer than two labels change nothing.
    assert krippendorff_alpha_nominal({**base, 4: ["w"], 5: [], 6: [None, float("nan")]}) == \
        krippendorff_alpha_nominal(base)


verdict_rows = st.lists(
    st.tuples(st.sampled_from(["c1", "c2", "c3", "c4"]), st.sampled_from(["ana", "bo", "cy"]),
              st.sampled_from(["dog", "rain"]), st.sampled_from(["correct", "wrong", "unsure"])),
    max_size=40)


@settings(max_examples=60, deadline=None)
@given(verdict_rows)
def test_alpha_tables_equal_the_coincidence_formula(rows):
    verdicts = verdict_table(rows)
    last = verdicts.drop_duplicates(["clip_id", "annotator", "tag"], keep="last")
    judged = last[last["verdict"] != "unsure"]
    units = judged.groupby(["clip_id", "tag"])["verdict"].apply(list).to_dict()
    assert same(alpha_overall(verdicts), krippendorff_alpha_nominal(units))
    by_tag = alpha_by_tag(verdicts)
    assert by_tag["tag"].tolist() == sorted(set(verdicts["tag"]))
    for row in by_tag.itertuples():
        tag_units = {key: labels for key, labels in units.items() if key[1] == row.tag}
        assert same(row.alpha, krippendorff_alpha_nominal(tag_units))
        assert row.items == sum(len(labels) >= 2 for labels in tag_units.values())
        assert row.pairable == sum(len(labels) for labels in tag_units.values() if len(labels) >= 2)


def test_alpha_by_tag_hand_computed():
    verdicts = verdict_table([
        ("c1", "ana", "dog", "correct"), ("c1", "bo", "dog", "correct"),
        ("c2", "ana", "dog", "wrong"), ("c2", "bo", "dog", "wrong"),
        ("c3", "ana", "dog", "correct"), ("c3", "bo", "dog", "unsure"),     # unsure = missing: unit dropped
        ("c1", "ana", "rain", "correct"), ("c1", "bo", "rain", "correct"),  # one value only: undefined
    ])
    table = alpha_by_tag(verdicts)
    assert tuple(table.columns) == ALPHA_COLUMNS
    assert table[["tag", "items", "pairable"]].values.tolist() == [["dog", 2, 4], ["rain", 1, 2]]
    assert table.alpha[0] == 1.0 and math.isnan(table.alpha[1])
    # Overall: units (c1,dog) cc, (c2,dog) ww, (c1,rain) cc -> perfect agreement with two values.
    assert alpha_overall(verdicts) == 1.0


# ---------------------------------------------------------------------------------------------------------------
# Annotators
# ---------------------------------------------------------------------------------------------------------------
def test_annotator_quality_known_majority():
    verdicts = verdict_table([
        # (c1, dog): three say correct, dan wrong -> the others' majority is "correct" for everyone.
        ("c1", "ana", "dog", "correct"), ("c1", "bo", "dog", "correct"), ("c1", "cy", "dog", "correct"),
        ("c1", "dan", "dog", "wrong"),
        # (c1, rain): ana and bo see a 1-1 tie among the others (left out); cy faces two "wrong"; dan is unsure.
        ("c1", "ana", "rain", "wrong"), ("c1", "bo", "rain", "wrong"), ("c1", "cy", "rain", "correct"),
        ("c1", "dan", "rain", "unsure"),
        # (c2, dog): two annotators, each the other's majority.
        ("c2", "ana", "dog", "correct"), ("c2", "bo", "dog", "correct"),
    ])
    timings = pd.DataFrame([("ana", "c1", 30.0), ("ana", "c1", 10.0), ("ana", "c2", 20.0), ("bo", "c1", 15.0),
                            ("eve", "c3", 5.0)], columns=["annotator", "clip_id", "seconds"])
    table = annotator_quality(verdicts, timings)
    assert tuple(table.columns) == QUALITY_COLUMNS
    assert table["annotator"].tolist() == ["ana", "bo", "cy", "dan", "eve"]
    got = table.set_index("annotator")
    # ana: 3 verdicts; compared on (c1,dog) and (c2,dog), agreed on both; (c1,rain) is a tie.
    assert got.loc["ana", ["verdicts", "judged", "unsure", "compared", "agreed"]].tolist() == [3, 3, 0, 2, 2]
    assert got.loc["bo", ["compared", "agreed"]].tolist() == [2, 2]
    # cy: agreed on (c1,dog), against the two "wrong" on (c1,rain) -> 1/2.
    assert got.loc["cy", ["compared", "agreed", "majority_agreement"]].tolist() == [2, 1, 0.5]
    # dan: one judged verdict, against the majority; the unsure one is not compared.
    assert got.loc["dan", ["verdicts", "judged", "unsure", "compared", "agreed", "majority_agreement"]].tolist() \
        == [2, 1, 1, 1, 0, 0.0]
    # eve only has timings: no verdicts, agreement undefined.
    assert got.loc["eve", "verdicts"] == 0 and math.isnan(got.loc["eve", "majority_agreement"])
    # ana: clip seconds 30 + 10 = 40 and 20 -> median 30; bo 15; cy none -> NaN; eve 5.
    assert got.loc["ana", "median_seconds_per_clip"] == 30.0 and got.loc["bo", "median_seconds_per_clip"] == 15.0
    assert math.isnan(got.loc["cy", "median_seconds_per_clip"]) and got.loc["eve", "median_seconds_per_clip"] == 5
    # Wilson 2/2 for ana: low = 1 / (1 + z²/2) = 0.3424.
    assert round(got.loc["ana", "agreement_low"], 4) == 0.3424 and got.loc["ana", "agreement_high"] == 1.0
    without = annotator_quality(verdicts)
    assert without["annotator"].tolist() == ["ana", "bo", "cy", "dan"]
    assert without["median_seconds_per_clip"].isna().all()


def test_annotator_quality_refuses_negative_seconds():
    timings = pd.DataFrame([("ana", "c1", -3.0)], columns=["annotator", "clip_id", "seconds"])
    with pytest.raises(AuditStatsError, match="timings row 0"):
        annotator_quality(VERDICTS, timings)


# ---------------------------------------------------------------------------------------------------------------
# Planted-bias check
# ---------------------------------------------------------------------------------------------------------------
def precision_from_counts(counts: dict[str, tuple[int, int]]) -> pd.DataFrame:
    rows = []
    for tag, (correct, judged) in counts.items():
        rows += [(f"{tag}{i}", "ana", tag, "correct" if i < correct else "wrong") for i in range(judged)]
    rows += [("x", "ana", "rare", "unsure")]
    return tag_precision(verdict_table(rows))


def test_flag_biased_tags_planted_hallucination():
    table = precision_from_counts({"speech": (45, 50), "music": (46, 50), "studio": (5, 20), "dog": (9, 10)})
    flags = flag_biased_tags(table, clean_tags=["speech", "music", "not-in-table"])
    assert tuple(flags.columns) == BIAS_COLUMNS
    got = flags.set_index("tag")
    # Pooled clean: 91/100 -> Wilson (0.8377, 0.9519): centre 0.8948, half 0.0571.
    assert got.clean_precision.iloc[0] == 0.91
    assert (round(got.clean_low.iloc[0], 4), round(got.clean_high.iloc[0], 4)) == (0.8377, 0.9519)
    # studio 5/20 -> (0.1119, 0.4687): entirely below 0.8377 -> biased, margin 0.3690.
    assert bool(got.loc["studio", "biased"]) and round(got.loc["studio", "margin"], 4) == 0.3690
    # dog 9/10 -> (0.5958, 0.9821) overlaps: not flagged; rare (nothing judged) is never flagged.
    assert not got.loc["dog", "biased"] and not got.loc["rare", "biased"]
    assert got.is_clean.to_dict() == {"studio": False, "speech": True, "music": True, "dog": False, "rare": False}
    assert flags["tag"].iloc[0] == "studio"                       # biased first
    # No judged clean tag -> reference (0, 1): nothing can lie below it.
    assert not flag_biased_tags(table, clean_tags=["rare"])["biased"].any()
    # A bare (tag, judged, correct) table is enough: the bounds are recomputed.
    bare = flag_biased_tags(table[["tag", "judged", "correct"]], clean_tags=["speech", "music"])
    assert bare.set_index("tag").loc["studio", "biased"]


# ---------------------------------------------------------------------------------------------------------------
# Empty inputs and the no-streamlit rule
# ---------------------------------------------------------------------------------------------------------------
EMPTY_VERDICTS = verdict_table([])


@pytest.mark.parametrize("empty", [EMPTY_VERDICTS, pd.DataFrame(), None])
def test_empty_inputs_give_empty_frames_with_columns(empty):
    cases = [
        (tag_precision(empty), TAG_PRECISION_COLUMNS),
        (miss_rate(empty, None), MISS_RATE_COLUMNS),
        (miss_rate(empty, pd.DataFrame()), MISS_RATE_COLUMNS),
        (hallucination_rate_by(empty, CLIPS, by="domain"), ("domain", "judged", "wrong", "hallucination_rate",
                                                             "rate_low", "rate_high", "clips")),
        (hallucination_rate_by(empty, None, by="source"), ("source", "judged", "wrong", "hallucination_rate",
                                                            "rate_low", "rate_high", "clips")),
        (over_assertion(empty), OVER_ASSERTION_COLUMNS),
        (pairwise_kappa(empty), PAIRWISE_KAPPA_COLUMNS),
        (alpha_by_tag(empty), ALPHA_COLUMNS),
        (annotator_quality(empty), QUALITY_COLUMNS),
        (annotator_quality(empty, pd.DataFrame()), QUALITY_COLUMNS),
        (flag_biased_tags(empty, ["speech"]), BIAS_COLUMNS),
    ]
    for frame, columns in cases:
        assert isinstance(frame, pd.DataFrame) and frame.empty and tuple(frame.columns) == tuple(columns)
    assert math.isnan(alpha_overall(empty))


def test_only_unsure_verdicts_do_not_break_anything():
    unsure = verdict_table([("c1", "ana", "dog", "unsure"), ("c1", "bo", "dog", "unsure")])
    assert pairwise_kappa(unsure).empty and math.isnan(alpha_overall(unsure))
    assert alpha_by_tag(unsure)[["tag", "items", "pairable"]].values.tolist() == [["dog", 0, 0]]
    assert hallucination_rate_by(unsure, CLIPS, by="domain").empty
    assert annotator_quality(unsure)["compared"].tolist() == [0, 0]


@settings(max_examples=100, deadline=None)
@given(verdict_rows)
def test_precision_is_nan_only_where_undefined(rows):
    table = tag_precision(verdict_table(rows))
    defined = table[["judged", "correct", "wrong", "unsure", "clips", "precision_low", "precision_high"]]
    assert not defined.isna().any().any()
    assert (table["precision"].isna() == (table["judged"] == 0)).all()
    judged = table[table["judged"] > 0]
    assert ((judged.precision_low <= judged.precision) & (judged.precision <= judged.precision_high)).all()


def test_module_imports_neither_streamlit_nor_duckdb():
    code = ("import sys, curation.audit.stats; "
            "assert not {'streamlit', 'duckdb'} & set(sys.modules), sorted({'streamlit', 'duckdb'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
