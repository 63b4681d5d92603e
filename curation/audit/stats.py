"""Audit statistics: how often the captioner's tags are right, what it misses, where it hallucinates, how far
its captions over-assert compared with the human captions, and how much the annotators agree.

Place in the flow: ingest -> audit campaigns (``curation.audit.campaigns``) -> verdicts in DuckDB -> (this module)
statistics -> bias dashboards. Every function here is pure: plain pandas / Python in, a DataFrame or a float
out; nothing opens the database or imports Streamlit, so a page reads its tables through the store and hands
them over, and every number can be checked by hand in a test.

Inputs, one spelling each (as the store writes them):

* ``verdicts``: ``clip_id, annotator, tag, verdict`` with ``verdict`` in ``{"correct", "wrong", "unsure"}``.
  One judgement is one (clip, annotator, tag) row; if that key repeats, the LAST row wins (a re-judgement
  replaces the earlier one, as the store's primary key would).
* ``added``: ``clip_id, annotator, tag``: a tag an annotator added as missing from the clip.
* ``clip_attributes``: keyed by ``clip_id`` and/or ``tag``; columns such as ``domain``, ``source``,
  ``caption_words`` (words in the generated caption) or ``df`` (clips carrying the tag) / ``frequency_band``.
* ``timings``: ``annotator, clip_id, seconds``.

"unsure" is MISSING, never a label: it is counted (``unsure`` columns) but it is neither a success nor a
failure for precision, and it is not a category for agreement. An annotator who is unsure has not told us
whether the tag is present; treating "unsure" as a third label would make two annotators who are both unsure
"agree" and inflate kappa/alpha with non-information.

Undefined numbers are NaN and only there: a precision with no judged verdict, a kappa or alpha where no
variation exists (every label the same: chance agreement is 1, the formula is 0/0), an agreement rate with
nothing to compare. Counts and Wilson bounds are never NaN (n = 0 gives the uninformative interval (0, 1)).
Empty inputs give empty frames with the documented columns, never exceptions; malformed inputs (a missing
column, an unknown verdict) raise ``AuditStatsError`` naming the column / row and the fix.

Example::

    precision = tag_precision(verdicts)          # tag, judged, correct, ..., precision_low, precision_high
    flags = flag_biased_tags(precision, clean_tags=["speech", "music", "dog"])
    flags[flags.biased]                          # tags whose whole 95% interval lies below the clean tags'
    hallucination_rate_by(verdicts, clips, by="domain")
    over_assertion(rows, variants={"hi-hat": ["hihat", "high hat"]}).head(20)
    alpha_overall(verdicts), pairwise_kappa(verdicts)
"""
from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from itertools import combinations
from typing import Hashable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from curation.errors import UtsError

__all__ = [
    "VERDICTS",
    "MISSING_GROUP",
    "AuditStatsError",
    "wilson_interval",
    "tag_precision",
    "miss_rate",
    "frequency_band",
    "caption_length_band",
    "hallucination_rate_by",
    "mention_pattern",
    "over_assertion",
    "cohen_kappa",
    "pairwise_kappa",
    "krippendorff_alpha_nominal",
    "alpha_by_tag",
    "alpha_overall",
    "annotator_quality",
    "flag_biased_tags",
]

VERDICTS = ("correct", "wrong", "unsure")
JUDGED = ("correct", "wrong")
# The group a verdict falls into when its clip/tag has no attribute row (or a null value): kept visible, so the
# groups of a breakdown always add up to all judged verdicts.
MISSING_GROUP = "(missing)"
# The same band edges as the campaign sampler (curation.audit.campaigns), so a dashboard's bands match the strata.
FREQUENCY_BAND_EDGES = (10, 100, 1000)
CAPTION_LENGTH_BAND_EDGES = (10, 20, 40)

VERDICT_COLUMNS = ("clip_id", "annotator", "tag", "verdict")
ADDED_COLUMNS = ("clip_id", "annotator", "tag")
TIMING_COLUMNS = ("annotator", "clip_id", "seconds")
OVER_ASSERTION_INPUT = ("clip_id", "domain", "tag", "generated_caption", "original_captions")

TAG_PRECISION_COLUMNS = ("tag", "judged", "correct", "wrong", "unsure", "precision", "precision_low",
                         "precision_high", "clips")
MISS_RATE_COLUMNS = ("tag", "added", "correct", "miss_rate", "miss_low", "miss_high", "clips_added")
RATE_COLUMNS = ("judged", "wrong", "hallucination_rate", "rate_low", "rate_high", "clips")
OVER_ASSERTION_COLUMNS = ("tag", "domain", "clips", "generated_mentions", "human_mentions", "generated_share",
                          "human_share", "over_assertion")
PAIRWISE_KAPPA_COLUMNS = ("annotator_a", "annotator_b", "items", "agreement", "kappa")
ALPHA_COLUMNS = ("tag", "items", "pairable", "alpha")
QUALITY_COLUMNS = ("annotator", "verdicts", "judged", "unsure", "compared", "agreed", "majority_agreement",
                   "agreement_low", "agreement_high", "median_seconds_per_clip")
BIAS_COLUMNS = ("tag", "judged", "correct", "precision", "precision_low", "precision_high", "clean_precision",
                "clean_low", "clean_high", "margin", "is_clean", "biased")


class AuditStatsError(UtsError, ValueError):
    """An input table of the audit statistics does not hold what the function expects."""


# --------------------------------------------------------------------------------------------------------------
# Input tables
# --------------------------------------------------------------------------------------------------------------
def _table(data, required: Sequence[str], name: str) -> pd.DataFrame:
    """A copy of ``data`` as a DataFrame holding ``required``; None or an empty table gives an empty frame with
    those columns (so that every caller can treat "nothing yet" like any other input)."""
    if data is None:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in required})
    frame = data.copy() if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        if len(frame) == 0:
            for column in missing:
                frame[column] = pd.Series(dtype=object)
            return frame
        raise AuditStatsError(
            f"{name}: missing column(s) {missing}; expected columns {list(required)}, found "
            f"{list(map(str, frame.columns))} (rename the columns, e.g. clip_key -> clip_id)")
    return frame.reset_index(drop=True)


def _verdicts(verdicts) -> pd.DataFrame:
    frame = _table(verdicts, VERDICT_COLUMNS, "verdicts")
    known = frame["verdict"].isin(VERDICTS)
    if not known.all():
        row = int(np.flatnonzero(~known.to_numpy())[0])
        raise AuditStatsError(
            f"verdicts row {row}: column 'verdict': expected one of {list(VERDICTS)}, found "
            f"{frame['verdict'].iloc[row]!r} ({int((~known).sum())} such row(s); map them before calling)")
    # One judgement per (clip, annotator, tag): the last row wins, as a re-judgement replaces the first.
    return frame.drop_duplicates(list(VERDICT_COLUMNS[:3]), keep="last").reset_index(drop=True)


def _empty(columns: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in columns})


# --------------------------------------------------------------------------------------------------------------
# Proportions
# --------------------------------------------------------------------------------------------------------------
def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    ``centre = (p + z²/2n) / (1 + z²/n)``, ``half = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)``; bounds clipped to
    [0, 1]. Chosen over the normal (Wald) interval because audits have small n per tag and precisions near 1,
    where Wald collapses to zero width (8/8 -> [1, 1]); Wilson stays honest ((0.676, 1.0) for 8/8).
    ``n = 0`` -> ``(0.0, 1.0)``: nothing is known. Example: ``wilson_interval(8, 10) ≈ (0.4902, 0.9433)``.
    """
    successes, n = _count(successes, "successes"), _count(n, "n")
    if n < 0 or not 0 <= successes <= n:
        raise AuditStatsError(f"wilson_interval: expected 0 <= successes <= n, found successes={successes}, n={n}")
    if not z > 0:
        raise AuditStatsError(f"wilson_interval: expected z > 0, found z={z!r}")
    low, high = _wilson_arrays(np.array([successes]), np.array([n]), z)
    return float(low[0]), float(high[0])


def _count(value, name: str) -> int:
    # Counts often arrive as floats from pandas sums (8.0); an integral float is a count, 8.5 or True is not.
    if isinstance(value, (bool, np.bool_)):
        raise AuditStatsError(f"wilson_interval: {name}: expected an integer count, found {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise AuditStatsError(f"wilson_interval: {name}: expected an integer count, found {value!r}")


def _wilson_arrays(successes, n, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Wilson bounds; n = 0 -> (0, 1)."""
    successes = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    low = np.zeros(n.shape)
    high = np.ones(n.shape)
    known = n > 0
    if known.any():
        s, m = successes[known], n[known]
        p = s / m
        z2 = z * z
        denominator = 1.0 + z2 / m
        centre = (p + z2 / (2 * m)) / denominator
        half = z * np.sqrt(p * (1 - p) / m + z2 / (4 * m * m)) / denominator
        # Exact ends at 0/n and n/n (the formula gives them up to rounding).
        low[known] = np.where(s == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
        high[known] = np.where(s == m, 1.0, np.clip(centre + half, 0.0, 1.0))
    return low, high


def _ratio(numerator, denominator) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (undefined, never a fake 0)."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def tag_precision(verdicts, z: float = 1.96) -> pd.DataFrame:
    """Per tag: how often the captioner's tag was judged right.

    Unit: one (clip, annotator, tag) judgement. ``judged = correct + wrong`` ("unsure" is excluded and counted
    in ``unsure``); ``precision = correct / judged`` (NaN when judged = 0, with the interval (0, 1));
    ``precision_low/high``: Wilson interval at ``z``; ``clips``: distinct clips with any verdict on the tag.
    Columns: tag, judged, correct, wrong, unsure, precision, precision_low, precision_high, clips; by tag.
    """
    frame = _verdicts(verdicts)
    if frame.empty:
        return _empty(TAG_PRECISION_COLUMNS)
    counts = (frame.assign(correct=frame["verdict"].eq("correct"), wrong=frame["verdict"].eq("wrong"),
                           unsure=frame["verdict"].eq("unsure"))
              .groupby("tag", sort=True)
              .agg(correct=("correct", "sum"), wrong=("wrong", "sum"), unsure=("unsure", "sum"),
                   clips=("clip_id", "nunique"))
              .reset_index())
    counts["judged"] = counts["correct"] + counts["wrong"]
    counts["precision"] = _ratio(counts["correct"], counts["judged"])
    counts["precision_low"], counts["precision_high"] = _wilson_arrays(counts["correct"], counts["judged"], z)
    return _finish(counts, TAG_PRECISION_COLUMNS, ("judged", "correct", "wrong", "unsure", "clips"))


def _finish(frame: pd.DataFrame, columns: Sequence[str], int_columns: Sequence[str] = ()) -> pd.DataFrame:
    frame = frame.loc[:, list(columns)].reset_index(drop=True)
    for column in int_columns:
        frame[column] = frame[column].astype("int64")
    return frame


def miss_rate(verdicts, added, z: float = 1.96) -> pd.DataFrame:
    """Per tag: how often annotators had to ADD the tag as missing, relative to the times it was there.

    Unit: one (clip, annotator) pair. ``added`` = pairs where the annotator added the tag as missing;
    ``correct`` = pairs where the annotator judged the captioner's tag correct (the tag was present and
    asserted). ``miss_rate = added / (added + correct)``: of the times an annotator found the tag in the audio
    (asserted and confirmed, or absent and added), the share the captioner missed. "wrong"/"unsure" verdicts
    are not in the denominator: a wrong tag was not present, an unsure one is unknown. The two tables are
    counted as given (the audit page never offers a tag as "missing" that is already on the clip, so a pair is
    in at most one of them). Wilson interval at
    ``z``; ``clips_added``: distinct clips where anyone added it. Only tags with ``added + correct > 0`` get a
    row (the rate is undefined otherwise). Columns: tag, added, correct, miss_rate, miss_low, miss_high,
    clips_added; by tag.
    """
    frame = _verdicts(verdicts)
    extra = _table(added, ADDED_COLUMNS, "added").drop_duplicates(list(ADDED_COLUMNS))
    correct = frame[frame["verdict"].eq("correct")].groupby("tag").size().rename("correct")
    adds = extra.groupby("tag").agg(added=("clip_id", "size"), clips_added=("clip_id", "nunique"))
    table = pd.concat([adds, correct], axis=1).fillna(0)
    if table.empty:
        return _empty(MISS_RATE_COLUMNS)
    table = table[(table["added"] + table["correct"]) > 0].sort_index().rename_axis("tag").reset_index()
    table["miss_rate"] = _ratio(table["added"], table["added"] + table["correct"])
    table["miss_low"], table["miss_high"] = _wilson_arrays(table["added"], table["added"] + table["correct"], z)
    return _finish(table, MISS_RATE_COLUMNS, ("added", "correct", "clips_added"))


# --------------------------------------------------------------------------------------------------------------
# Bands and breakdowns
# --------------------------------------------------------------------------------------------------------------
def _band(values, edges: Sequence[int], name: str) -> pd.Series:
    edges = tuple(int(edge) for edge in edges)
    if not edges or edges[0] < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise AuditStatsError(f"{name}: expected strictly increasing integer edges, each >= 2, found {edges}")
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() & series.notna()
    if bad.any() or (numbers < 0).any():
        row = series.index[bad | (numbers < 0)][0]
        raise AuditStatsError(f"{name}: expected non-negative counts, found {series.loc[row]!r} at index {row!r}")
    # Bands are [lo, hi) over counts: "1-9" holds 1..9; "0" is its own band (an empty caption, an unseen tag).
    lows = (1, *edges)
    labels = ["0"] + [f"{lo}-{hi - 1}" if hi - 1 > lo else f"{lo}" for lo, hi in zip(lows, edges)] + \
        [f"{edges[-1]}+"]
    codes = np.searchsorted(np.asarray(lows, dtype=float), numbers.to_numpy(dtype=float), side="right")
    codes = np.where(numbers.isna().to_numpy(), -1, codes)
    return pd.Series(pd.Categorical.from_codes(codes, categories=labels, ordered=True), index=series.index,
                     name=series.name)


def frequency_band(df_series, edges: Sequence[int] = FREQUENCY_BAND_EDGES) -> pd.Series:
    """Tag document frequency (clips carrying the tag) -> readable band, as an ordered categorical.

    ``edges`` are the first counts of each band after "1-...": the default (10, 100, 1000) gives "1-9",
    "10-99", "100-999", "1000+" (the campaign sampler's strata); 0 -> "0"; a null stays null. Example:
    ``frequency_band(pd.Series([3, 10, 250]), edges=(10, 100)) -> ["1-9", "10-99", "100+"]``.
    """
    return _band(df_series, edges, "frequency_band")


def caption_length_band(words_series, edges: Sequence[int] = CAPTION_LENGTH_BAND_EDGES) -> pd.Series:
    """Words in a caption -> readable band ("0", "1-9", "10-19", "20-39", "40+" by default), ordered
    categorical; the same rule as ``frequency_band``."""
    return _band(words_series, edges, "caption_length_band")


# A band asked for by name is derived from its source column when the attributes do not carry it already.
_DERIVED_BANDS = {"frequency_band": ("df", frequency_band), "caption_length_band": ("caption_words",
                                                                                    caption_length_band)}


def hallucination_rate_by(verdicts, clip_attributes, by: str, z: float = 1.96) -> pd.DataFrame:
    """Share of "wrong" among judged verdicts per group of ``by``, with Wilson intervals.

    ``by`` is a column of ``verdicts`` (``tag``, ``annotator``) or of ``clip_attributes``, which is joined on
    whichever of ``clip_id`` / ``tag`` it has (per-clip attributes such as domain, source, caption_words; per-tag
    ones such as df / frequency_band; or per (clip, tag)). ``by="caption_length_band"`` / ``"frequency_band"``
    are derived from ``caption_words`` / ``df`` with the default edges when not given. A verdict whose clip/tag
    has no attribute value falls into the group ``"(missing)"`` (last), so the groups add up to every judged
    verdict. Unit: one (clip, annotator, tag) judgement; "unsure" excluded.
    ``hallucination_rate = wrong / judged``. Columns: <by>, judged, wrong, hallucination_rate, rate_low,
    rate_high, clips; band order for bands, else sorted by the group's text.
    """
    columns = (by, *RATE_COLUMNS)
    frame = _verdicts(verdicts)
    frame = frame[frame["verdict"].isin(JUDGED)]
    if frame.empty:
        return _empty(columns)
    if by not in frame.columns:
        frame = _join_attribute(frame, clip_attributes, by)
    groups = frame[by]
    ordered = isinstance(groups.dtype, pd.CategoricalDtype)
    order = list(groups.cat.categories) if ordered else None
    labels = groups.astype(object).where(groups.notna(), MISSING_GROUP).map(str)
    table = (frame.assign(_group=labels, _wrong=frame["verdict"].eq("wrong"))
             .groupby("_group", sort=False)
             .agg(judged=("verdict", "size"), wrong=("_wrong", "sum"), clips=("clip_id", "nunique")))
    rank = {label: i for i, label in enumerate(order or sorted(set(table.index) - {MISSING_GROUP}))}
    table = table.loc[sorted(table.index, key=lambda label: (label == MISSING_GROUP, rank.get(label, 0), label))]
    table = table.rename_axis(by).reset_index()
    table["hallucination_rate"] = _ratio(table["wrong"], table["judged"])
    table["rate_low"], table["rate_high"] = _wilson_arrays(table["wrong"], table["judged"], z)
    return _finish(table, columns, ("judged", "wrong", "clips"))


def _join_attribute(frame: pd.DataFrame, clip_attributes, by: str) -> pd.DataFrame:
    attributes = None if clip_attributes is None else (
        clip_attributes.copy() if isinstance(clip_attributes, pd.DataFrame) else pd.DataFrame(clip_attributes))
    if attributes is None or (attributes.empty and by not in attributes.columns):
        return frame.assign(**{by: pd.Series([None] * len(frame), index=frame.index, dtype=object)})
    if by not in attributes.columns and by in _DERIVED_BANDS and _DERIVED_BANDS[by][0] in attributes.columns:
        source, band = _DERIVED_BANDS[by]
        attributes[by] = band(attributes[source])
    keys = [key for key in ("clip_id", "tag") if key in attributes.columns]
    if by not in attributes.columns or not keys:
        derived = f" (or its source column '{_DERIVED_BANDS[by][0]}')" if by in _DERIVED_BANDS else ""
        raise AuditStatsError(
            f"clip_attributes: expected a column '{by}'{derived} and a key column 'clip_id' and/or 'tag', found "
            f"{list(map(str, attributes.columns))}; 'by' may also name a verdicts column (tag, annotator)")
    attributes = attributes[keys + [by]].drop_duplicates()
    clash = attributes.duplicated(keys, keep=False)
    if clash.any():
        key = attributes.loc[clash, keys].iloc[0].to_dict()
        raise AuditStatsError(f"clip_attributes: {key} has more than one '{by}' value; give one row per key")
    # A left join keeps verdicts without attributes (they become the "(missing)" group).
    return frame.merge(attributes, on=keys, how="left", validate="many_to_one")


# --------------------------------------------------------------------------------------------------------------
# Over-assertion: does the generated caption mention a tag more often than the human captions of the same clips?
# --------------------------------------------------------------------------------------------------------------
_SEPARATORS = re.compile(r"[\s_\-]+")
_NEVER = re.compile(r"(?!x)x")


@lru_cache(maxsize=65536)
def _compiled_mention(forms: tuple[str, ...]) -> re.Pattern:
    bodies = []
    for form in forms:
        words = [word for word in _SEPARATORS.split(form.strip().lower()) if word]
        if words:
            # '-', '_' and spaces in the tag read as space or nothing in the text: hi-hat ~ "hi hat", "hihat",
            # "hi_hat"; a trailing plural s/es on the last word: "hi-hats", "buses".
            bodies.append(r"[\s_\-]*".join(map(re.escape, words)) + r"(?:e?s)?")
    if not bodies:
        return _NEVER
    # Longest first so that the alternation reports the fullest form; lookarounds make it a whole-word match.
    bodies.sort(key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(bodies) + r")(?!\w)", re.IGNORECASE)


def mention_pattern(tag: str, variants: Sequence[str] | None = None) -> re.Pattern:
    """The compiled, cached regex that decides whether a text mentions ``tag`` (see ``over_assertion``)."""
    return _compiled_mention(tuple(sorted({str(tag), *(str(v) for v in (variants or ()))})))


def _caption_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, float) and math.isnan(value):
        return []
    return [str(item) for item in value if isinstance(item, str)]


def over_assertion(rows, variants: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Per (tag, domain): how much more often the generated caption mentions the tag than the human captions.

    ``rows``: ``clip_id, domain, tag, generated_caption, original_captions`` (a list of strings; a single string
    or null is accepted), one row per (clip, tag); a repeated (clip, domain, tag) keeps its first row.
    A text mentions a tag when a case-insensitive, whole-word match of the tag or one of ``variants[tag]``
    occurs, where '-', '_' and spaces inside a form match a run of spaces/'-'/'_' or nothing, and the last word
    may carry a plural "s"/"es". ``generated_share`` = clips whose generated caption mentions the tag / clips;
    ``human_share`` = clips where ANY original caption mentions it / clips;
    ``over_assertion = generated_share - human_share`` (> 0: the captioner says it more than people did).
    One precompiled regex per distinct tag (cached across calls), ~10k rows in well under a second.
    Columns: tag, domain, clips, generated_mentions, human_mentions, generated_share, human_share,
    over_assertion; sorted by over_assertion desc, then tag, domain.
    """
    frame = _table(rows, OVER_ASSERTION_INPUT, "over_assertion rows")
    if frame.empty:
        return _empty(OVER_ASSERTION_COLUMNS)
    frame = frame.drop_duplicates(["clip_id", "domain", "tag"], keep="first").reset_index(drop=True)
    lookup = {str(key).strip().lower(): list(values) for key, values in (variants or {}).items()}
    generated = np.zeros(len(frame), dtype=bool)
    human = np.zeros(len(frame), dtype=bool)
    captions = frame["generated_caption"].to_numpy(dtype=object)
    originals = frame["original_captions"].to_numpy(dtype=object)
    for tag, positions in frame.groupby("tag", sort=False).indices.items():
        pattern = mention_pattern(tag, lookup.get(str(tag).strip().lower()))
        search = pattern.search
        for i in positions:
            text = captions[i]
            generated[i] = isinstance(text, str) and search(text) is not None
            human[i] = any(search(caption) is not None for caption in _caption_list(originals[i]))
    table = (frame.assign(_generated=generated, _human=human, domain=frame["domain"].fillna(MISSING_GROUP))
             .groupby(["tag", "domain"], sort=False)
             .agg(clips=("clip_id", "nunique"), generated_mentions=("_generated", "sum"),
                  human_mentions=("_human", "sum"))
             .reset_index())
    table["generated_share"] = table["generated_mentions"] / table["clips"]
    table["human_share"] = table["human_mentions"] / table["clips"]
    table["over_assertion"] = table["generated_share"] - table["human_share"]
    table = table.sort_values(["over_assertion", "tag", "domain"], ascending=[False, True, True], kind="stable")
    return _finish(table, OVER_ASSERTION_COLUMNS, ("clips", "generated_mentions", "human_mentions"))


# --------------------------------------------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------------------------------------------
def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two annotators' nominal labels on the same items (``a[i]`` and ``b[i]`` label item i).

    ``kappa = (p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed agreement and ``p_e = Σ_c p_a(c)·p_b(c)``;
    computed on integer counts, ``(n·agree - Σ n_a(c)·n_b(c)) / (n² - Σ n_a(c)·n_b(c))``. NaN when undefined:
    no items, or both annotators used one and the same label (p_e = 1), as scikit-learn's
    ``cohen_kappa_score`` does.
    """
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise AuditStatsError(f"cohen_kappa: expected two label lists of one length, found {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return float("nan")
    agree = sum(x == y for x, y in zip(a, b))
    count_a, count_b = Counter(a), Counter(b)
    chance = sum(count * count_b.get(label, 0) for label, count in count_a.items())
    if chance == n * n:
        return float("nan")
    return (n * agree - chance) / (n * n - chance)


def _judged(verdicts) -> pd.DataFrame:
    frame = _verdicts(verdicts)
    return frame[frame["verdict"].isin(JUDGED)]


def pairwise_kappa(verdicts) -> pd.DataFrame:
    """Cohen's kappa for every pair of annotators over the (clip, tag) items both judged ("unsure" = missing).

    Columns: annotator_a, annotator_b (a < b), items (shared judged items), agreement (share of them with the
    same verdict), kappa (NaN when undefined, e.g. both said "correct" to everything); pairs sharing no item
    are left out.
    """
    frame = _judged(verdicts)
    if frame.empty:
        return _empty(PAIRWISE_KAPPA_COLUMNS)
    wide = frame.pivot(index=["clip_id", "tag"], columns="annotator", values="verdict")
    records = []
    for first, second in combinations(sorted(wide.columns, key=str), 2):
        both = wide[[first, second]].dropna()
        if both.empty:
            continue
        x, y = both[first].tolist(), both[second].tolist()
        records.append((first, second, len(both), float(np.mean(both[first].to_numpy() == both[second].to_numpy())),
                        cohen_kappa(x, y)))
    if not records:
        return _empty(PAIRWISE_KAPPA_COLUMNS)
    return _finish(pd.DataFrame(records, columns=list(PAIRWISE_KAPPA_COLUMNS)), PAIRWISE_KAPPA_COLUMNS, ("items",))


def _is_missing(label) -> bool:
    return label is None or (isinstance(label, float) and math.isnan(label)) or label is pd.NA


def krippendorff_alpha_nominal(units: Mapping[Hashable, Sequence[Hashable]]) -> float:
    """Krippendorff's alpha for nominal labels, from ``{unit: [label of each annotator who labelled it]}``.

    The coincidence-matrix formula: a unit with m_u >= 2 labels adds 1/(m_u - 1) to o[c, k] for every ordered
    pair of its labels from different annotators; n_c = Σ_k o[c, k], n = Σ_c n_c (the pairable values).
    ``alpha = 1 - (n - 1) · Σ_{c≠k} o[c, k] / Σ_{c≠k} n_c·n_k``. Null labels (None/NaN) are dropped first;
    units left with fewer than 2 labels are ignored (they cannot be paired). NaN when undefined: no pairable
    unit, or a single label value in all pairable units (expected disagreement 0). Perfect agreement with at
    least two values -> 1.0. Krippendorff (2011)'s nominal example (4 coders, 12 units, missing values) -> 0.743.
    """
    observed_off = 0.0
    totals: Counter = Counter()
    for labels in units.values():
        present = [label for label in labels if not _is_missing(label)]
        m = len(present)
        if m < 2:
            continue
        counts = Counter(present)
        # Off-diagonal coincidences of the unit: ordered pairs with different values, weighted 1/(m - 1).
        observed_off += (m * m - sum(c * c for c in counts.values())) / (m - 1)
        totals.update(counts)
    n = sum(totals.values())
    expected_off = n * n - sum(c * c for c in totals.values())
    if n < 2 or expected_off == 0:
        return float("nan")
    return 1.0 - (n - 1) * observed_off / expected_off


def _alpha_table(frame: pd.DataFrame, group: str) -> pd.DataFrame:
    """Vectorised nominal alpha per ``group`` over units (clip_id, tag) labelled by ``verdict``: the same formula
    as ``krippendorff_alpha_nominal``, as GROUP BYs (a campaign holds tens of thousands of judgements)."""
    unit = ["clip_id", "tag"]
    keys = list(dict.fromkeys([group, *unit]))
    per_value = frame.groupby(keys + ["verdict"], sort=False).size().rename("n_uc").reset_index()
    per_value["n_uc2"] = per_value["n_uc"] ** 2
    per_unit = per_value.groupby(keys, sort=False).agg(m=("n_uc", "sum"), sq=("n_uc2", "sum")).reset_index()
    per_unit = per_unit[per_unit["m"] >= 2]
    per_unit = per_unit.assign(off=(per_unit["m"] ** 2 - per_unit["sq"]) / (per_unit["m"] - 1))
    by_group = per_unit.groupby(group).agg(items=("m", "size"), pairable=("m", "sum"), observed_off=("off", "sum"))
    paired = per_value.merge(per_unit[keys], on=keys)
    n_c = paired.groupby([group, "verdict"]).agg(n_c=("n_uc", "sum")).reset_index()
    n_c["n_c2"] = n_c["n_c"] ** 2
    sum_sq = n_c.groupby(group)["n_c2"].sum()
    groups = pd.Index(frame[group].unique()).sort_values()
    table = by_group.reindex(groups).fillna(0).assign(sum_sq=sum_sq.reindex(groups).fillna(0))
    n = table["pairable"].to_numpy(dtype=float)
    expected_off = n * n - table["sum_sq"].to_numpy(dtype=float)
    alpha = np.full(len(table), np.nan)
    defined = (n >= 2) & (expected_off > 0)
    alpha[defined] = 1.0 - (n[defined] - 1) * table["observed_off"].to_numpy(dtype=float)[defined] / \
        expected_off[defined]
    return table.assign(alpha=alpha).rename_axis(group).reset_index()


def alpha_by_tag(verdicts) -> pd.DataFrame:
    """Krippendorff's nominal alpha per tag over its clips (unit = clip, labels = annotators' correct/wrong;
    "unsure" = missing). Columns: tag, items (clips with >= 2 judged labels), pairable (labels in those clips),
    alpha (NaN when undefined: no such clip, or every label the same). Every tag with a verdict gets a row."""
    frame = _verdicts(verdicts)
    if frame.empty:
        return _empty(ALPHA_COLUMNS)
    judged = frame[frame["verdict"].isin(JUDGED)]
    table = _alpha_table(judged, "tag").set_index("tag").reindex(sorted(frame["tag"].unique(), key=str))
    table = table.fillna({"items": 0, "pairable": 0}).rename_axis("tag").reset_index()
    return _finish(table, ALPHA_COLUMNS, ("items", "pairable"))


def alpha_overall(verdicts) -> float:
    """Krippendorff's nominal alpha over all (clip, tag) units of the campaign ("unsure" = missing); NaN when
    undefined (no unit judged twice, or only one verdict value overall)."""
    judged = _judged(verdicts)
    if judged.empty:
        return float("nan")
    table = _alpha_table(judged.assign(_all=0), "_all")
    return float(table["alpha"].iloc[0]) if len(table) else float("nan")


# --------------------------------------------------------------------------------------------------------------
# Annotators
# --------------------------------------------------------------------------------------------------------------
def annotator_quality(verdicts, timings: pd.DataFrame | None = None, z: float = 1.96) -> pd.DataFrame:
    """Per annotator: volume, agreement with the majority of the OTHER annotators, and speed.

    ``verdicts``: all the annotator's rows; ``judged``/``unsure`` split them. For each (clip, tag) the annotator
    judged, the other annotators' judged verdicts on it are counted; their majority is the verdict with
    strictly more votes, and a tie (including no other annotator) leaves the item out. ``compared`` = items
    with a majority, ``agreed`` = those where the annotator's verdict equals it, ``majority_agreement =
    agreed / compared`` (NaN when compared = 0) with a Wilson interval. Leaving the annotator out of their own
    majority matters: with 2-3 annotators per clip, counting oneself would push everyone's agreement up.
    ``median_seconds_per_clip``: median over clips of the annotator's summed ``seconds`` per clip in
    ``timings`` (``annotator, clip_id, seconds``), NaN when none. Columns: annotator, verdicts, judged, unsure,
    compared, agreed, majority_agreement, agreement_low, agreement_high, median_seconds_per_clip; by annotator,
    one row per annotator found in verdicts or timings.
    """
    frame = _verdicts(verdicts)
    times = _table(timings, TIMING_COLUMNS, "timings")
    seconds = pd.to_numeric(times["seconds"], errors="coerce")
    if (seconds < 0).any() or (seconds.isna() & times["seconds"].notna()).any():
        row = int(np.flatnonzero(((seconds < 0) | (seconds.isna() & times["seconds"].notna())).to_numpy())[0])
        raise AuditStatsError(f"timings row {row}: column 'seconds': expected a non-negative number, found "
                              f"{times['seconds'].iloc[row]!r}")
    annotators = sorted(set(frame["annotator"]) | set(times["annotator"]), key=str)
    if not annotators:
        return _empty(QUALITY_COLUMNS)
    is_correct = frame["verdict"].eq("correct")
    is_wrong = frame["verdict"].eq("wrong")
    item = [frame["clip_id"], frame["tag"]]
    # Votes of the others = the item's totals minus the annotator's own vote.
    others_correct = is_correct.groupby(item).transform("sum") - is_correct
    others_wrong = is_wrong.groupby(item).transform("sum") - is_wrong
    majority = pd.Series(np.where(others_correct > others_wrong, "correct",
                                  np.where(others_wrong > others_correct, "wrong", "")), index=frame.index)
    compared = (is_correct | is_wrong) & majority.ne("")
    frame = frame.assign(_judged=is_correct | is_wrong, _unsure=frame["verdict"].eq("unsure"), _compared=compared,
                         _agreed=compared & frame["verdict"].eq(majority))
    table = (frame.groupby("annotator")
             .agg(verdicts=("verdict", "size"), judged=("_judged", "sum"), unsure=("_unsure", "sum"),
                  compared=("_compared", "sum"), agreed=("_agreed", "sum"))
             .reindex(annotators).fillna(0))
    per_clip = times.assign(seconds=seconds).dropna(subset=["seconds"]).groupby(
        ["annotator", "clip_id"])["seconds"].sum()
    table["median_seconds_per_clip"] = (per_clip.groupby(level="annotator").median().reindex(annotators)
                                        .astype(float).to_numpy())
    table = table.rename_axis("annotator").reset_index()
    table["majority_agreement"] = _ratio(table["agreed"], table["compared"])
    table["agreement_low"], table["agreement_high"] = _wilson_arrays(table["agreed"], table["compared"], z)
    return _finish(table, QUALITY_COLUMNS, ("verdicts", "judged", "unsure", "compared", "agreed"))


# --------------------------------------------------------------------------------------------------------------
# Planted-bias check
# --------------------------------------------------------------------------------------------------------------
def flag_biased_tags(precision_table: pd.DataFrame, clean_tags: Sequence[str], z: float = 1.96) -> pd.DataFrame:
    """Mark tags whose precision is credibly below that of tags known to be clean.

    ``precision_table``: ``tag_precision``'s output (``tag, judged, correct`` are enough; the Wilson bounds are
    recomputed at ``z`` when absent). The clean reference is POOLED: ``clean_precision = Σ correct / Σ judged``
    over the rows of ``clean_tags`` (tags not in the table are ignored), with its Wilson interval
    ``clean_low/high``. Rule: ``biased = precision_high < clean_low`` (strictly; the tag's whole interval lies
    below the pooled interval). ``margin = clean_low - precision_high`` (> 0 exactly when biased). Requiring
    non-overlapping intervals is deliberately conservative (roughly p < 0.01 for similar widths), because a
    dashboard tests every tag at once and a false "hallucinated" mark costs a curator's trust. A tag with no
    judged verdict has the interval (0, 1) and is never flagged; with no judged clean tag the reference is (0, 1)
    and nothing is flagged. Clean tags are checked too (``is_clean``): one far below its peers is worth seeing.
    Columns: tag, judged, correct, precision, precision_low, precision_high, clean_precision, clean_low,
    clean_high, margin, is_clean, biased; biased first, then by margin desc, then tag.
    """
    table = _table(precision_table, ("tag", "judged", "correct"), "precision_table")
    if table.empty:
        return _empty(BIAS_COLUMNS)
    judged = pd.to_numeric(table["judged"]).astype("int64")
    correct = pd.to_numeric(table["correct"]).astype("int64")
    if "precision_low" not in table.columns or "precision_high" not in table.columns:
        table["precision_low"], table["precision_high"] = _wilson_arrays(correct, judged, z)
    table["precision"] = _ratio(correct, judged)
    clean = set(clean_tags)
    table["is_clean"] = table["tag"].isin(clean)
    clean_judged = int(judged[table["is_clean"]].sum())
    clean_correct = int(correct[table["is_clean"]].sum())
    low, high = wilson_interval(clean_correct, clean_judged, z)
    table["clean_precision"] = clean_correct / clean_judged if clean_judged else float("nan")
    table["clean_low"], table["clean_high"] = low, high
    table["margin"] = low - table["precision_high"].astype(float)
    table["biased"] = (judged > 0) & (table["precision_high"].astype(float) < low)
    table = table.sort_values(["biased", "margin", "tag"], ascending=[False, False, True], kind="stable")
    return _finish(table.assign(judged=judged, correct=correct), BIAS_COLUMNS, ("judged", "correct"))
