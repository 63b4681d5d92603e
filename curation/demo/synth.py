"""Procedural demo corpus: synthetic audio with a known ground truth, captioned by a simulated captioner whose
biases are declared up front, so every audit view of UTS Studio can be checked against the right answer.

Place in the flow: demo corpus (this module) -> manifest.jsonl.gz (Lhotse MonoCut, UTS layout) -> ingest ->
store -> curation/audit pages. ``truth.jsonl`` and ``biases.json`` sit beside the manifest; the ingest of the
demo stores them so that audit statistics (e.g. how often "reverb" is asserted on dry music) can be compared
with the rates declared in ``CAPTIONER_BIASES``.

Three layers of "truth" exist per clip, on purpose:

* ``true_tags``: canonical concepts really rendered into the audio (from the generator parameters);
* ``caption_tags``: what the simulated captioner asserts, i.e. ``true_tags`` after the biases that fired;
* ``audio_tag``: the untidy surface tags an LLM extractor would pull out of that caption (variants,
  plurals, near-synonyms), which is what curation has to clean up.

Only numpy, soundfile and the standard library are used, so the demo can be built where torch is absent.

Example::

    from pathlib import Path
    from curation.demo.synth import build_demo_corpus

    files = build_demo_corpus(Path("data/uts_demo"), n_clips=600, seed=0)
    print(files.manifest_path)        # data/uts_demo/manifest.jsonl.gz

or from a shell: ``python -m curation.demo.synth data/uts_demo --n-clips 600 --seed 0``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import soundfile as sf

__all__ = [
    "CAPTIONER",
    "CAPTIONER_BIASES",
    "CaptionerBias",
    "DemoCorpusFiles",
    "DOMAINS",
    "SAMPLE_RATE",
    "SOURCE_DATASETS",
    "bias_applies",
    "build_demo_corpus",
]

SAMPLE_RATE = 16_000
CAPTIONER = "sim-captioner-v1"
DOMAINS = ("speech", "music", "environment")
SOURCE_DATASETS = ("demo-field", "demo-studio", "demo-mixed")


# --------------------------------------------------------------------------------------------------------------
# The simulated captioner's biases. Rates live here and nowhere else: the generator reads them from this tuple,
# and biases.json is written from it, so the audit's "declared" numbers can never drift from what was simulated.
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptionerBias:
    name: str
    kind: str  # "hallucination" | "confusion" | "omission"
    tag: str  # the canonical concept the bias adds, swaps in, or drops
    applies_to: str  # the condition, in words; ``bias_applies`` is its executable twin
    rate: float  # P(bias fires | condition holds), sampled per clip as a Bernoulli draw
    description: str


CAPTIONER_BIASES: tuple[CaptionerBias, ...] = (
    CaptionerBias(
        name="reverb_on_dry_music",
        kind="hallucination",
        tag="reverb",
        applies_to="music-domain clips rendered without reverb",
        rate=0.40,
        description="Asserts 'reverb' on dry music, as captioners trained on reverberant productions tend to.",
    ),
    CaptionerBias(
        name="child_called_female",
        kind="confusion",
        tag="female",
        applies_to="clips containing a child speaker",
        rate=0.70,
        description="Describes a child's voice as an adult woman's: asserts 'female' and drops 'child'.",
    ),
    CaptionerBias(
        name="studio_everywhere",
        kind="hallucination",
        tag="studio",
        applies_to="clips that are not studio recordings (studio = demo-studio speech/music with no background "
                   "noise, no quiet rain and no environmental sound)",
        rate=0.80,
        description="Calls almost anything a studio recording, including outdoor field recordings.",
    ),
    CaptionerBias(
        name="misses_quiet_rain",
        kind="omission",
        tag="rain",
        applies_to="clips with quiet background rain (rain that is not a main source)",
        rate=0.60,
        description="Does not mention faint rain mixed far below the main sources.",
    ),
    CaptionerBias(
        name="siren_called_alarm",
        kind="confusion",
        tag="alarm",
        applies_to="clips containing a siren",
        rate=0.50,
        description="Describes a siren sweep as an 'alarm': asserts 'alarm' and drops 'siren'.",
    ),
)


_BIAS_CONDITIONS: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "reverb_on_dry_music": lambda r: r["domain"] == "music" and not r["attributes"]["reverb"],
    "child_called_female": lambda r: r["attributes"]["speaker"] == "child",
    "studio_everywhere": lambda r: not r["attributes"]["studio"],
    "misses_quiet_rain": lambda r: bool(r["attributes"]["quiet_rain"]),
    "siren_called_alarm": lambda r: "siren" in r["attributes"]["env_sources"],
}
assert set(_BIAS_CONDITIONS) == {b.name for b in CAPTIONER_BIASES}, "every declared bias needs a condition"


def bias_applies(bias_name: str, record: Mapping[str, Any]) -> bool:
    """Whether ``bias_name``'s condition holds for a truth record (a parsed ``truth.jsonl`` line).

    Audits need the denominator of each bias rate (clips where it *could* fire); this is the same predicate the
    generator used, so estimated rates are comparable with ``CaptionerBias.rate``.
    """
    return _BIAS_CONDITIONS[bias_name](record)


@dataclass(frozen=True)
class DemoCorpusFiles:
    out_dir: Path
    manifest_path: Path
    truth_path: Path
    biases_path: Path
    n_clips: int
    seed: int


# --------------------------------------------------------------------------------------------------------------
# Scene sampling: every generator parameter is drawn here, before any audio is made, so truth.jsonl is a
# complete description of the clip.
# --------------------------------------------------------------------------------------------------------------
_SOURCE_SHARES = (0.35, 0.35, 0.30)
# P(speech, music, environment) per collection: field is mostly environment, studio mostly speech+music.
_DOMAIN_MIX = {
    "demo-field": (0.20, 0.10, 0.70),
    "demo-studio": (0.45, 0.50, 0.05),
    "demo-mixed": (1 / 3, 1 / 3, 1 / 3),
}
_CROSS_MIX_RATE = 0.15
_REVERB_RATE = {"speech": 0.35, "music": 0.35, "environment": 0.15}
_NOISE_RATE = {"demo-field": 0.35, "demo-studio": 0.08, "demo-mixed": 0.25}
_QUIET_RAIN_RATE = {"demo-field": 0.25, "demo-studio": 0.12, "demo-mixed": 0.20}

_PITCH_RANGES = {"male": (100.0, 130.0), "female": (190.0, 240.0), "child": (260.0, 320.0)}
_INSTRUMENTS = ("guitar", "piano", "synth", "organ")
_PLUCKED = ("guitar", "piano")
_ENV_SOURCES = ("rain", "wind", "engine", "siren", "bird", "dog", "footsteps", "clock")
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6)),
}
_FAST_BPM = 120
_SLOW_BPM = 90
_OUTDOOR_SOURCES = ("rain", "wind", "bird", "siren")


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _speech_params(rng: np.random.Generator) -> dict[str, Any]:
    speaker = _pick(rng, ("male", "female", "child"))
    lo, hi = _PITCH_RANGES[speaker]
    emotion = _pick(rng, ("calm", "excited"))
    rate = rng.uniform(3.0, 4.2) if emotion == "calm" else rng.uniform(4.6, 6.2)
    return {"speaker": speaker, "pitch_hz": round(float(rng.uniform(lo, hi)), 1), "emotion": emotion,
            "syllable_rate_hz": round(float(rate), 2)}


def _music_params(rng: np.random.Generator) -> dict[str, Any]:
    mode = _pick(rng, ("major", "minor"))
    tempo = int(rng.integers(70, 161))
    first = _pick(rng, _INSTRUMENTS)
    instruments = [first]
    if rng.random() < 0.4:
        # A plucked lead is usually accompanied by a pad, so the second part fills the other role.
        pool = [i for i in _INSTRUMENTS if i != first and ((first in _PLUCKED) != (i in _PLUCKED))]
        instruments.append(_pick(rng, pool))
    drums = bool(rng.random() < 0.6)
    parts = ["kick"]
    if drums:
        if rng.random() < 0.85:
            parts.append("snare")
        if rng.random() < 0.85:
            parts.append("hi-hat")
    tempo_class = "fast" if tempo >= _FAST_BPM else ("slow" if tempo <= _SLOW_BPM else "moderate")
    return {
        "key": _pick(rng, _NOTE_NAMES), "mode": mode, "tempo_bpm": tempo, "tempo_class": tempo_class,
        "instruments": instruments,
        "guitar_type": _pick(rng, ("acoustic", "electric")) if "guitar" in instruments else None,
        "texture": _pick(rng, ("arpeggio", "chords")),
        "progression": int(rng.integers(len(_PROGRESSIONS[mode]))),
        "drums": drums, "drum_parts": parts if drums else [],
    }


def _sample_scene(rng: np.random.Generator) -> tuple[str, str, int, dict[str, Any]]:
    source = SOURCE_DATASETS[int(rng.choice(3, p=_SOURCE_SHARES))]
    domain = DOMAINS[int(rng.choice(3, p=_DOMAIN_MIX[source]))]
    num_samples = int(rng.integers(3 * SAMPLE_RATE, 6 * SAMPLE_RATE + 1))
    attrs: dict[str, Any] = {
        "layers": [domain], "mixed": False,
        "speaker": None, "pitch_hz": None, "emotion": None, "syllable_rate_hz": None,
        "key": None, "mode": None, "tempo_bpm": None, "tempo_class": None, "instruments": [],
        "guitar_type": None, "texture": None, "progression": None, "drums": False, "drum_parts": [],
        "env_sources": [],
    }
    if domain == "speech":
        attrs.update(_speech_params(rng))
    elif domain == "music":
        attrs.update(_music_params(rng))
    else:
        k = int(rng.integers(1, 4))
        chosen = set(rng.choice(len(_ENV_SOURCES), size=k, replace=False).tolist())
        attrs["env_sources"] = [s for i, s in enumerate(_ENV_SOURCES) if i in chosen]

    if rng.random() < _CROSS_MIX_RATE:
        attrs["mixed"] = True
        if domain == "speech":
            if rng.random() < 0.6:
                attrs.update(_music_params(rng))
                attrs["layers"].append("music")
            else:
                attrs["env_sources"] = ["rain"]
                attrs["layers"].append("environment")
        else:
            attrs.update(_speech_params(rng))
            attrs["layers"].append("speech")

    attrs["reverb"] = bool(rng.random() < _REVERB_RATE[domain])
    attrs["reverb_t60_s"] = round(float(rng.uniform(0.4, 1.4)), 2) if attrs["reverb"] else None
    attrs["background_noise"] = bool(rng.random() < _NOISE_RATE[source])
    attrs["noise_snr_db"] = round(float(rng.uniform(8.0, 22.0)), 1) if attrs["background_noise"] else None
    attrs["quiet_rain"] = bool("rain" not in attrs["env_sources"] and rng.random() < _QUIET_RAIN_RATE[source])
    attrs["quiet_rain_db"] = round(float(rng.uniform(-32.0, -24.0)), 1) if attrs["quiet_rain"] else None
    # "Studio" is a property of the recording chain we simulate: a studio-collection speech/music take with
    # nothing else in the room. Reverb is allowed (studios add it); any ambient sound is not.
    attrs["studio"] = bool(source == "demo-studio" and domain != "environment" and not attrs["env_sources"]
                           and not attrs["background_noise"] and not attrs["quiet_rain"])
    attrs["outdoor"] = any(s in attrs["env_sources"] for s in _OUTDOOR_SOURCES)
    attrs["indoor"] = bool(not attrs["outdoor"] and (attrs["reverb"] or attrs["studio"]
                                                     or "clock" in attrs["env_sources"]))
    # Excited speakers are louder; with peak normalisation, loudness is the target peak.
    louder = 0.2 if attrs["emotion"] == "excited" else 0.0
    attrs["peak"] = round(float(rng.uniform(0.55, 0.75) + louder), 3)
    attrs["num_samples"] = num_samples
    attrs["duration_s"] = num_samples / SAMPLE_RATE
    return source, domain, num_samples, attrs


# Canonical concepts in salience order: tags are taken from the front when a caption asserts more than 10.
# The bias concepts sit early so that the audit sees them in audio_tag, not only in the caption text.
_CONCEPT_ORDER = (
    "speech", "music", "ambience", "male", "female", "child", "calm", "excited",
    "guitar", "piano", "synth", "organ", "drums",
    "rain", "wind", "engine", "siren", "alarm", "bird", "dog", "footsteps", "clock",
    "reverb", "studio", "major", "minor", "fast", "slow", "noise",
    "electric", "electronic", "hi-hat", "snare", "bark", "tick",
    "high-pitched", "high-frequency", "low-frequency", "indoor", "outdoor",
)
_CONCEPT_RANK = {c: i for i, c in enumerate(_CONCEPT_ORDER)}


# Scene flags that each make one concept true.
_FLAG_CONCEPTS = {"quiet_rain": "rain", "reverb": "reverb", "background_noise": "noise", "studio": "studio",
                  "indoor": "indoor", "outdoor": "outdoor"}


def _true_concepts(attrs: Mapping[str, Any]) -> list[str]:
    c: set[str] = set()
    env = attrs["env_sources"]
    if attrs["speaker"]:
        c |= {"speech", attrs["speaker"], attrs["emotion"]}
    if attrs["mode"]:
        c |= {"music", attrs["mode"], *attrs["instruments"]}
        if attrs["tempo_class"] != "moderate":
            c.add(attrs["tempo_class"])
        if attrs["guitar_type"] == "electric":
            c.add("electric")
        if "synth" in attrs["instruments"]:
            c.add("electronic")
        if attrs["drums"]:
            c.add("drums")
            c |= {p for p in attrs["drum_parts"] if p in ("snare", "hi-hat")}
    if env:
        c |= {"ambience", *env}
        if "dog" in env:
            c.add("bark")
        if "clock" in env:
            c.add("tick")
    c |= {concept for flag, concept in _FLAG_CONCEPTS.items() if attrs[flag]}
    if attrs["speaker"] == "child" or "bird" in env:
        c.add("high-pitched")
    if "hi-hat" in attrs["drum_parts"] or "bird" in env:
        c.add("high-frequency")
    if "engine" in env or "wind" in env:
        c.add("low-frequency")
    return sorted(c, key=_CONCEPT_RANK.__getitem__)


# --------------------------------------------------------------------------------------------------------------
# Audio synthesis. Everything is vectorised over samples (and notes/events); no scipy, so IIR filters are
# replaced by FFT-domain shaping, which is exact for stationary noise and fast for whole clips.
# --------------------------------------------------------------------------------------------------------------
_EPS = 1e-9


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + _EPS


def _to_rms(x: np.ndarray, target: float = 0.1) -> np.ndarray:
    return x * (target / _rms(x))


def _fft_len(n: int) -> int:
    # Clip lengths are arbitrary (often with large prime factors), which makes FFTs many times slower.
    return 1 << int(np.ceil(np.log2(n)))


def _shaped_noise(rng: np.random.Generator, n: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    size = _fft_len(n)
    m = size // 2 + 1
    spec = rng.standard_normal(m) + 1j * rng.standard_normal(m)
    freqs = np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE)
    return _to_rms(np.fft.irfft(spec * gain(freqs), size)[:n])


def _fft_filter(x: np.ndarray, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Zero-phase filtering of each row (last axis) by a magnitude response given as a function of Hz."""
    n = x.shape[-1]
    size = _fft_len(n)
    spec = np.fft.rfft(x, size, axis=-1) * gain(np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE))
    return np.fft.irfft(spec, size, axis=-1)[..., :n]


def _lowpass(fc: float, order: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    return lambda f: 1.0 / np.sqrt(1.0 + (f / fc) ** (2 * order))


def _bandpass(lo: float, hi: float, order: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    return lambda f: (1.0 / np.sqrt(1.0 + (f / hi) ** (2 * order))) / np.sqrt(1.0 + (lo / (f + 1.0)) ** (2 * order))


def _scatter(n: int, starts: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Overlap-add one kernel row per event at ``starts``; events running past the end are truncated."""
    if len(starts) == 0:
        return np.zeros(n)
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(kernels.shape[1])
    keep = (idx < n) & (idx >= 0)
    return np.bincount(idx[keep], weights=kernels[keep], minlength=n)[:n]


def _slow_modulation(rng: np.random.Generator, n: int, lo_hz: float, hi_hz: float, parts: int = 3) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    freqs = rng.uniform(lo_hz, hi_hz, parts)
    phases = rng.uniform(0, 2 * np.pi, parts)
    m = np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]).sum(axis=0) / parts
    return 0.5 + 0.5 * m  # in [0, 1]


# Wavetables make harmonic tones cost one gather per sample instead of one sine per harmonic.
_TABLE_SIZE = 1 << 15  # nearest-sample lookup; this size keeps its error ~55 dB down
_TABLE_PHASE = np.arange(_TABLE_SIZE) / _TABLE_SIZE


def _wavetable(amps: Sequence[float]) -> np.ndarray:
    k = np.arange(1, len(amps) + 1)
    table = (np.asarray(amps)[:, None] * np.sin(2 * np.pi * k[:, None] * _TABLE_PHASE)).sum(axis=0)
    return table / np.max(np.abs(table))


_TABLES = {
    "guitar_bright": _wavetable([1.0, 0.7, 0.5, 0.4, 0.3, 0.22, 0.15, 0.1, 0.07, 0.05]),
    "guitar_mellow": _wavetable([1.0, 0.35, 0.12, 0.05]),
    "piano_bright": _wavetable([1.0, 0.5, 0.35, 0.2, 0.15, 0.08, 0.05]),
    "piano_mellow": _wavetable([1.0, 0.25, 0.08]),
    "organ": _wavetable([1.0, 0.8, 0.0, 0.6, 0.0, 0.4, 0.0, 0.3]),
    "synth": _wavetable([1.0 / k for k in range(1, 13)]),  # band-limited saw
    "engine": _wavetable([1.0, 0.9, 0.8, 0.5, 0.45, 0.3, 0.2, 0.15, 0.1, 0.08]),
    "siren": _wavetable([1.0, 0.3, 0.15, 0.05]),
    "bark": _wavetable([1.0, 0.8, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2]),
}


def _table_lookup(table: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    return table[(cycles * _TABLE_SIZE).astype(np.int64) % _TABLE_SIZE]


# ---- speech -------------------------------------------------------------------------------------------------
# Adult male formants (Peterson & Barney style); other speakers scale them up with their shorter vocal tracts.
_VOWELS = np.array([
    (270, 2290, 3010), (530, 1840, 2480), (730, 1090, 2440), (570, 840, 2410),
    (300, 870, 2240), (660, 1720, 2410), (520, 1190, 2390),
], dtype=float)
_FORMANT_SCALE = {"male": 1.0, "female": 1.17, "child": 1.35}
_FORMANT_BW = np.array([80.0, 110.0, 160.0])
_FORMANT_GAIN = np.array([1.0, 0.55, 0.3])
_STFT_FRAME = 512
_STFT_HOP = 256


def _speech(rng: np.random.Generator, n: int, attrs: Mapping[str, Any]) -> np.ndarray:
    excited = attrs["emotion"] == "excited"
    syl = 1.0 / attrs["syllable_rate_hz"]
    onsets, offsets, vowels, stress = [], [], [], []
    t = rng.uniform(0.1, 0.3)
    in_word = 0
    word_len = int(rng.integers(2, 6))
    end = n / SAMPLE_RATE - 0.15
    while True:
        d = syl * rng.uniform(0.7, 1.2)
        if t + d > end:
            break
        onsets.append(t)
        offsets.append(t + d * 0.85)
        vowels.append(int(rng.integers(len(_VOWELS))))
        stress.append(rng.uniform(0.55, 1.0))
        t += d
        in_word += 1
        if in_word >= word_len:  # a pause between phrases; calm speakers leave longer ones
            t += rng.uniform(0.15, 0.45) if not excited else rng.uniform(0.06, 0.2)
            in_word = 0
            word_len = int(rng.integers(2, 6))
    on = np.array(onsets) * SAMPLE_RATE
    off = np.array(offsets) * SAMPLE_RATE
    amp = np.array(stress) * (1.0 if not excited else 1.3)
    samples = np.arange(n)

    # Syllable envelope: short attack, sustained vowel, short release, silence in between.
    attack = 0.25 * (off - on)
    xp = np.stack([on, on + attack, off - attack, off], axis=1).ravel()
    fp = np.stack([np.zeros_like(amp), amp, amp * 0.8, np.zeros_like(amp)], axis=1).ravel()
    env = np.interp(samples, xp, fp, left=0.0, right=0.0)

    # Pitch contour: a per-syllable target with declination; excited speech swings much wider.
    mid = (on + off) / 2
    spread = 0.22 if excited else 0.05
    contour = 1.0 + rng.normal(0.0, spread, len(mid)) - 0.08 * (mid / n)
    f0 = attrs["pitch_hz"] * np.interp(samples, mid, np.clip(contour, 0.6, 1.6))
    f0 *= 1.0 + 0.01 * np.sin(2 * np.pi * 5.5 * samples / SAMPLE_RATE)

    # Glottal source: one impulse per pitch period plus a little breath noise.
    cycles = np.cumsum(f0 / SAMPLE_RATE)
    pulses = np.zeros(n)
    pulses[1:][np.diff(np.floor(cycles)) > 0] = 1.0
    source = (pulses + 0.03 * rng.standard_normal(n)) * env

    # Formant filtering: the resonators' magnitude responses applied frame by frame (STFT overlap-add),
    # which is what a bank of time-varying resonators does to a pulse train, at a fraction of the cost.
    frame, hop, pad = _STFT_FRAME, _STFT_HOP, _STFT_FRAME // 2
    n_frames = (n + frame) // hop + 1
    padded = np.zeros(n_frames * hop + frame + 2 * pad)
    padded[frame // 2 + pad: frame // 2 + pad + n] = source
    window = np.hanning(frame + 1)[:-1]
    starts = np.arange(n_frames) * hop
    frames = np.zeros((n_frames, frame + 2 * pad))
    frames[:, pad:pad + frame] = padded[starts[:, None] + pad + np.arange(frame)] * window
    spec = np.fft.rfft(frames, axis=1)
    # Frame i is centred on clip sample starts[i]; it takes the formants of the nearest syllable ahead.
    syl_idx = np.clip(np.searchsorted(mid, starts), 0, len(mid) - 1)
    scale = _FORMANT_SCALE[attrs["speaker"]]
    formants = _VOWELS[np.asarray(vowels)] * scale  # (syllables, 3): formants are constant within a syllable
    freqs = np.fft.rfftfreq(frame + 2 * pad, 1.0 / SAMPLE_RATE)
    bw = _FORMANT_BW * scale
    resp = (_FORMANT_GAIN / (1.0 + ((freqs[None, :, None] - formants[:, None, :]) / (bw / 2)) ** 2)).sum(axis=2)
    resp *= 1.0 / (1.0 + freqs / 300.0)  # glottal roll-off
    out_frames = np.fft.irfft(spec * resp[syl_idx], axis=1)
    idx = starts[:, None] + np.arange(frame + 2 * pad)
    out = np.bincount(idx.ravel(), weights=out_frames.ravel(), minlength=len(padded))
    voiced = out[frame // 2 + pad: frame // 2 + pad + n]  # periodic Hann at hop=frame/2 sums to 1

    # Consonant-like hiss bursts before some syllables.
    burst_on = on[rng.random(len(on)) < 0.6]
    burst_len = int(0.04 * SAMPLE_RATE)
    kern = rng.standard_normal((len(burst_on), burst_len)) * np.hanning(burst_len)
    hiss = _scatter(n, np.maximum(burst_on - burst_len, 0), kern)
    hiss = _fft_filter(hiss, _bandpass(2500, 7000))
    return _to_rms(_to_rms(voiced) + 0.12 * _to_rms(hiss))


# ---- music --------------------------------------------------------------------------------------------------
def _midi_hz(m: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=float) - 69.0) / 12.0)


def _chord_notes(attrs: Mapping[str, Any], degree: int, root_midi: int) -> list[int]:
    scale = _MAJOR_SCALE if attrs["mode"] == "major" else _MINOR_SCALE
    notes = []
    for step in (0, 2, 4):
        d = degree + step
        notes.append(root_midi + scale[d % 7] + 12 * (d // 7))
    return notes


def _render_notes(n: int, freqs: np.ndarray, starts: np.ndarray, lengths: np.ndarray, instrument: str,
                  rng: np.random.Generator, electric: bool = False) -> np.ndarray:
    if len(freqs) == 0:
        return np.zeros(n)
    max_len = int(lengths.max())
    t = np.arange(max_len) / SAMPLE_RATE
    tt = t[None, :]
    f = freqs[:, None] * (1.0 + rng.normal(0.0, 0.0015, (len(freqs), 1)))  # slight human/analog detune
    alive = (np.arange(max_len)[None, :] < lengths[:, None]).astype(float)
    release = np.clip((lengths[:, None] - np.arange(max_len)[None, :]) / (0.03 * SAMPLE_RATE), 0.0, 1.0)
    if instrument in _PLUCKED:
        # Bright attack fading into a mellow tail: two wavetables crossfaded mimic per-harmonic decay.
        decay = 2.5 if instrument == "guitar" else 1.6
        bright = _table_lookup(_TABLES[f"{instrument}_bright"], f * tt)
        mellow = _table_lookup(_TABLES[f"{instrument}_mellow"], f * tt)
        fast = np.exp(-tt * decay * 4.0)
        slow = np.exp(-tt * decay)
        attack = np.clip(tt / 0.003, 0.0, 1.0)
        notes = attack * (bright * fast + mellow * slow * 0.7)
        if electric:
            notes = np.tanh(2.5 * notes) / np.tanh(2.5)
    else:
        table = _TABLES[instrument]
        attack_s = 0.02 if instrument == "organ" else 0.25
        attack = np.clip(tt / attack_s, 0.0, 1.0)
        if instrument == "synth":
            notes = 0.5 * (_table_lookup(table, f * 1.004 * tt) + _table_lookup(table, f * 0.996 * tt))
            notes *= 1.0 + 0.15 * np.sin(2 * np.pi * 4.0 * tt)
        else:
            notes = _table_lookup(table, f * tt)
        notes = notes * attack
    return _scatter(n, starts, notes * alive * release)


def _drum_kit(rng: np.random.Generator) -> dict[str, np.ndarray]:
    def t_of(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE

    t = t_of(0.35)
    sweep = 45.0 + rng.uniform(80, 130) * np.exp(-t / 0.035)  # pitch-swept sine
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / SAMPLE_RATE) * np.exp(-t / 0.12)
    t = t_of(0.25)
    snare_noise = _fft_filter(rng.standard_normal(len(t)), _bandpass(800, 7000))
    snare = 0.7 * snare_noise / np.max(np.abs(snare_noise)) * np.exp(-t / 0.06)
    snare += 0.5 * np.sin(2 * np.pi * rng.uniform(170, 210) * t) * np.exp(-t / 0.05)
    t = t_of(0.08)
    hat = np.diff(np.diff(rng.standard_normal(len(t) + 2)))  # double differencing = crude high-pass
    hat = 0.35 * hat / np.max(np.abs(hat)) * np.exp(-t / 0.018)
    return {"kick": kick, "snare": snare, "hi-hat": hat}


def _music(rng: np.random.Generator, n: int, attrs: Mapping[str, Any]) -> np.ndarray:
    beat = 60.0 / attrs["tempo_bpm"] * SAMPLE_RATE
    beats_per_chord = 2 if attrs["tempo_bpm"] < 100 else 4
    chord_len = beat * beats_per_chord
    root = 48 + _NOTE_NAMES.index(attrs["key"])
    progression = _PROGRESSIONS[attrs["mode"]][attrs["progression"]]
    n_chords = int(np.ceil(n / chord_len)) + 1
    chords = [_chord_notes(attrs, progression[i % len(progression)], root) for i in range(n_chords)]
    lead_offset = int(rng.uniform(0.0, 0.15) * SAMPLE_RATE)
    mix = np.zeros(n)
    for part, instrument in enumerate(attrs["instruments"]):
        freqs, starts, lengths = [], [], []
        plucked = instrument in _PLUCKED
        arpeggio = plucked and attrs["texture"] == "arpeggio" or (not plucked and part == 0
                                                                   and attrs["texture"] == "arpeggio")
        octave = 12 if plucked else 0
        for ci, chord in enumerate(chords):
            c0 = lead_offset + ci * chord_len
            if arpeggio:
                pattern = [chord[0], chord[1], chord[2], chord[0] + 12, chord[2], chord[1]]
                step = beat / 2
                for k in range(int(beats_per_chord * 2)):
                    freqs.append(pattern[k % len(pattern)] + octave)
                    starts.append(c0 + k * step)
                    lengths.append(min(step * 3, 1.2 * SAMPLE_RATE) if plucked else step)
            elif plucked:
                for b in range(beats_per_chord):
                    for si, note in enumerate(chord):  # strum: strings a few ms apart
                        freqs.append(note + octave)
                        starts.append(c0 + b * beat + si * 0.012 * SAMPLE_RATE)
                        lengths.append(min(beat, 1.2 * SAMPLE_RATE))
            else:
                for note in chord:
                    freqs.append(note)
                    starts.append(c0)
                    lengths.append(chord_len)
        starts_a = np.asarray(starts, dtype=np.int64)
        keep = starts_a < n
        layer = _render_notes(n, _midi_hz(np.asarray(freqs))[keep], starts_a[keep],
                              np.minimum(np.asarray(lengths)[keep], n).astype(np.int64), instrument, rng,
                              electric=attrs["guitar_type"] == "electric" and instrument == "guitar")
        mix += _to_rms(layer, 0.1 if part == 0 else 0.06)
    if attrs["drums"]:
        kit = _drum_kit(rng)
        n_beats = int(n / beat) + 1
        beat_pos = lead_offset + np.arange(n_beats) * beat
        pattern = {
            "kick": beat_pos[::2],
            "snare": beat_pos[1::2],
            "hi-hat": lead_offset + np.arange(2 * n_beats) * beat / 2,
        }
        drums = np.zeros(n)
        for part_name in attrs["drum_parts"]:
            pos = pattern[part_name].astype(np.int64)
            pos = pos[pos < n]
            vel = rng.uniform(0.8, 1.0, len(pos))
            drums += _scatter(n, pos, vel[:, None] * kit[part_name][None, :])
        mix += _to_rms(drums, 0.08)
    return _to_rms(mix)


# ---- environment --------------------------------------------------------------------------------------------
def _rain(rng: np.random.Generator, n: int) -> np.ndarray:
    bed = _shaped_noise(rng, n, _bandpass(400, 6000)) * (0.85 + 0.15 * _slow_modulation(rng, n, 0.1, 0.6))
    rate = rng.uniform(25, 80)
    count = int(rate * n / SAMPLE_RATE)
    klen = int(0.015 * SAMPLE_RATE)
    t = np.arange(klen) / SAMPLE_RATE
    f = rng.uniform(1500, 5000, (count, 1))
    tau = rng.uniform(0.002, 0.005, (count, 1))
    amp = rng.lognormal(0.0, 0.6, (count, 1))
    drops = amp * np.sin(2 * np.pi * f * t) * np.exp(-t / tau)
    droplets = _scatter(n, rng.integers(0, n, count), drops)
    return _to_rms(bed + 0.6 * _to_rms(droplets))


def _wind(rng: np.random.Generator, n: int) -> np.ndarray:
    low = _shaped_noise(rng, n, _lowpass(rng.uniform(250, 500), 2))
    mid = _shaped_noise(rng, n, _bandpass(500, 1500, 2))
    gusts = _slow_modulation(rng, n, 0.08, 0.4)
    whistle = _slow_modulation(rng, n, 0.1, 0.5) * gusts
    return _to_rms(low * (0.2 + 0.8 * gusts) + 0.4 * mid * whistle)


def _engine(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.uniform(28, 50) * (1.0 + 0.02 * (2 * _slow_modulation(rng, n, 0.1, 0.4) - 1))
    hum = _table_lookup(_TABLES["engine"], np.cumsum(f0) / SAMPLE_RATE)
    hum *= 1.0 + 0.2 * np.sin(2 * np.pi * f0 / 2 * t)  # firing-cycle roughness
    rumble = _shaped_noise(rng, n, _lowpass(200, 2))
    return _to_rms(_to_rms(hum) + 0.5 * rumble)


def _siren(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    center, depth = rng.uniform(800, 1100), rng.uniform(250, 450)
    if rng.random() < 0.6:  # wail: slow continuous sweep
        f = center + depth * np.sin(2 * np.pi * t / rng.uniform(1.2, 3.0))
    else:  # hi-lo: two alternating tones
        f = center + depth * np.sign(np.sin(2 * np.pi * t / rng.uniform(0.8, 1.4)))
    tone = _table_lookup(_TABLES["siren"], np.cumsum(f) / SAMPLE_RATE)
    return _to_rms(tone * np.clip(t / 0.3, 0, 1))


def _birds(rng: np.random.Generator, n: int) -> np.ndarray:
    dur_s = n / SAMPLE_RATE
    group_starts = np.sort(rng.uniform(0, dur_s - 0.3, int(rng.integers(2, 6))))
    starts, lengths, f_from, f_to = [], [], [], []
    for g in group_starts:
        t = g
        for _ in range(int(rng.integers(2, 7))):
            d = rng.uniform(0.04, 0.12)
            starts.append(t)
            lengths.append(d)
            a = rng.uniform(2500, 6000)
            f_from.append(a)
            f_to.append(float(np.clip(a * rng.uniform(0.5, 1.5), 1800, 7200)))
            t += d + rng.uniform(0.02, 0.12)
    lengths_s = np.asarray(lengths)
    klen = int(lengths_s.max() * SAMPLE_RATE) + 1
    tt = np.arange(klen)[None, :] / SAMPLE_RATE
    frac = np.clip(tt / lengths_s[:, None], 0.0, 1.0)
    trill = rng.uniform(25, 60, (len(starts), 1))
    inst_f = np.asarray(f_from)[:, None] + (np.asarray(f_to) - np.asarray(f_from))[:, None] * frac
    inst_f = inst_f * (1.0 + 0.04 * np.sin(2 * np.pi * trill * tt))  # fast FM
    phase = 2 * np.pi * np.cumsum(inst_f, axis=1) / SAMPLE_RATE
    env = np.sin(np.pi * frac) ** 2 * (tt < lengths_s[:, None])
    chirps = np.sin(phase) * env * rng.uniform(0.5, 1.0, (len(starts), 1))
    return _to_rms(_scatter(n, (np.asarray(starts) * SAMPLE_RATE).astype(np.int64), chirps))


def _dog(rng: np.random.Generator, n: int) -> np.ndarray:
    dur_s = n / SAMPLE_RATE
    base = rng.uniform(300, 550)
    starts = []
    t = rng.uniform(0.0, 0.6)
    while t < dur_s - 0.3:
        for _ in range(int(rng.integers(1, 4))):
            starts.append(t)
            t += rng.uniform(0.22, 0.35)
        t += rng.uniform(0.6, 1.6)
    count = len(starts)
    klen = int(0.25 * SAMPLE_RATE)
    tt = np.arange(klen)[None, :] / SAMPLE_RATE
    f = base * rng.uniform(0.9, 1.1, (count, 1)) * (1.0 - 0.35 * np.clip(tt / 0.2, 0, 1))  # falling pitch
    tone = _table_lookup(_TABLES["bark"], np.cumsum(f, axis=1) / SAMPLE_RATE)
    noise = _fft_filter(rng.standard_normal((count, klen)), _bandpass(300, 2500, 4))
    noise *= 0.3 / (np.sqrt(np.mean(noise ** 2, axis=1, keepdims=True)) + _EPS)  # growl under the tone
    env = np.clip(tt / 0.008, 0, 1) * np.exp(-tt / rng.uniform(0.05, 0.09, (count, 1)))
    barks = (tone + noise) * env
    return _to_rms(_scatter(n, (np.asarray(starts) * SAMPLE_RATE).astype(np.int64), barks))


def _footsteps(rng: np.random.Generator, n: int) -> np.ndarray:
    period = rng.uniform(0.45, 0.65)
    starts = np.arange(rng.uniform(0.0, 0.4), n / SAMPLE_RATE - 0.1, period)
    starts = starts + rng.normal(0, 0.015, len(starts))
    klen = int(0.08 * SAMPLE_RATE)
    tt = np.arange(klen)[None, :] / SAMPLE_RATE
    scuff = _fft_filter(rng.standard_normal((len(starts), klen)), _lowpass(1500, 2))
    thump = np.sin(2 * np.pi * rng.uniform(60, 95) * tt)
    steps = (scuff / (np.abs(scuff).max() + _EPS) + thump) * np.exp(-tt / 0.02)
    steps *= np.where(np.arange(len(starts)) % 2 == 0, 1.0, 0.8)[:, None]  # left/right foot differ
    return _to_rms(_scatter(n, np.clip(starts * SAMPLE_RATE, 0, None).astype(np.int64), steps))


def _clock(rng: np.random.Generator, n: int) -> np.ndarray:
    period = _pick(rng, (0.5, 1.0))
    starts = np.arange(rng.uniform(0.0, period), n / SAMPLE_RATE, period)
    klen = int(0.012 * SAMPLE_RATE)
    tt = np.arange(klen)[None, :] / SAMPLE_RATE
    pitch = np.where(np.arange(len(starts)) % 2 == 0, 2600.0, 2100.0)[:, None]  # tick / tock
    ticks = np.sin(2 * np.pi * pitch * tt) * np.exp(-tt / 0.0025)
    ticks += 0.3 * rng.standard_normal((len(starts), klen)) * np.exp(-tt / 0.001)
    return _to_rms(_scatter(n, (starts * SAMPLE_RATE).astype(np.int64), ticks))


_ENV_RENDER = {"rain": _rain, "wind": _wind, "engine": _engine, "siren": _siren, "bird": _birds, "dog": _dog,
               "footsteps": _footsteps, "clock": _clock}


def _reverb(rng: np.random.Generator, x: np.ndarray, t60: float) -> np.ndarray:
    ir_len = int(min(t60, 1.2) * SAMPLE_RATE)
    t = np.arange(ir_len) / SAMPLE_RATE
    ir = rng.standard_normal(ir_len) * np.exp(-6.91 * t / t60)
    ir[0] = 0.0
    size = 1 << int(np.ceil(np.log2(len(x) + ir_len)))
    wet = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[: len(x)]
    mix = rng.uniform(0.3, 0.55)
    return (1.0 - mix) * x + mix * _to_rms(wet, _rms(x))


def _render_clip(rng: np.random.Generator, n: int, domain: str, attrs: Mapping[str, Any]) -> np.ndarray:
    layers = {}
    if attrs["speaker"]:
        layers["speech"] = _speech(rng, n, attrs)
    if attrs["mode"]:
        layers["music"] = _music(rng, n, attrs)
    if attrs["env_sources"]:
        env = np.zeros(n)
        for s in attrs["env_sources"]:
            env += _ENV_RENDER[s](rng, n) * 10 ** (rng.uniform(-6.0, 0.0) / 20)
        layers["environment"] = _to_rms(env)
    x = np.zeros(n)
    for name, layer in layers.items():
        # The secondary layer of a cross-domain mix sits under the primary one.
        gain_db = 0.0 if name == domain else rng.uniform(-12.0, -5.0)
        x += layer * 10 ** (gain_db / 20)
    if attrs["reverb"]:
        x = _reverb(rng, x, attrs["reverb_t60_s"])
    level = _rms(x)
    if attrs["quiet_rain"]:
        x = x + _rain(rng, n) * level * 10 ** (attrs["quiet_rain_db"] / 20)
    if attrs["background_noise"]:
        tilt = rng.uniform(0.0, 1.0)  # 0 = white hiss, 1 = pink-ish rumble
        hiss = _shaped_noise(rng, n, lambda f: (f + 20.0) ** (-0.5 * tilt))
        x = x + hiss * level * 10 ** (-attrs["noise_snr_db"] / 20)
    fade = int(0.01 * SAMPLE_RATE)  # avoid clicks at the clip edges
    ramp = np.linspace(0.0, 1.0, fade)
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    return x * (attrs["peak"] / (np.max(np.abs(x)) + _EPS))


# --------------------------------------------------------------------------------------------------------------
# Captions and tags.
# --------------------------------------------------------------------------------------------------------------
# Surface variants an LLM tag extractor produces for each concept; the first is the most common one.
_TAG_VARIANTS: dict[str, tuple[str, ...]] = {
    "speech": ("speech", "speaking", "talking"),
    "music": ("music", "musical"),
    "ambience": ("ambience", "ambient", "environmental"),
    "male": ("male", "man"),
    "female": ("female", "woman"),
    "child": ("child", "kid", "children"),
    "calm": ("calm", "relaxed", "soothing"),
    "excited": ("excited", "energetic", "animated"),
    "guitar": ("guitar", "guitars"),
    "piano": ("piano", "keyboard"),
    "synth": ("synth", "synthesizer", "synths"),
    "organ": ("organ",),
    "drums": ("drums", "drum", "percussion"),
    "rain": ("rain", "rainfall", "raining"),
    "wind": ("wind", "windy", "gusts"),
    "engine": ("engine", "motor", "car", "vehicle"),
    "siren": ("siren", "sirens"),
    "alarm": ("alarm",),
    "bird": ("birds", "bird", "birdsong", "chirping"),
    "dog": ("dog", "dogs"),
    "footsteps": ("footsteps", "footstep", "walking"),
    "clock": ("clock",),
    "reverb": ("reverb", "reverberation", "reverberant", "echo"),
    "studio": ("studio",),
    "major": ("major", "major-key"),
    "minor": ("minor", "minor-key"),
    "fast": ("fast", "upbeat", "uptempo"),
    "slow": ("slow", "downtempo"),
    "noise": ("noise", "noisy", "hiss"),
    "electric": ("electric",),
    "electronic": ("electronic",),
    "hi-hat": ("hi-hat", "hihat", "hi_hat"),
    "snare": ("snare", "snare-drum"),
    "bark": ("bark", "barking"),
    "tick": ("tick", "ticking", "ticks"),
    "high-pitched": ("high-pitched", "high_pitched", "highpitched"),
    "high-frequency": ("high-frequency", "high_frequency"),
    "low-frequency": ("low-frequency", "low_frequency"),
    "indoor": ("indoor", "indoors"),
    "outdoor": ("outdoor", "outdoors"),
}
assert set(_TAG_VARIANTS) == set(_CONCEPT_ORDER)

# Generic words that every caption of a domain contains, used to pad short tag lists (only if present).
_FILLER_TAGS = {
    "speech": ("voice", "spoken", "vocal", "recording"),
    "music": ("melody", "instrumental", "chords", "rhythm", "recording"),
    "environment": ("soundscape", "atmosphere", "scene", "background", "recording"),
}

# Words whose presence in the caption shows it asserts a concept (checked by the tests).
_CONCEPT_CUES: dict[str, tuple[str, ...]] = {
    "speech": ("speak", "talk", "voice"), "music": ("music", "melod", "instrumental", "piece"),
    "ambience": ("ambien", "soundscape", "atmosphere"), "male": ("male", "man"), "female": ("female", "woman"),
    "child": ("child", "kid"), "calm": ("calm", "relaxed"), "excited": ("excit", "animated", "energetic"),
    "guitar": ("guitar",), "piano": ("piano",), "synth": ("synth",), "organ": ("organ",), "drums": ("drum",),
    "rain": ("rain",), "wind": ("wind",), "engine": ("engine", "motor"), "siren": ("siren",),
    "alarm": ("alarm",), "bird": ("bird",), "dog": ("dog",), "footsteps": ("footstep",), "clock": ("clock",),
    "reverb": ("reverb",), "studio": ("studio",), "major": ("major",), "minor": ("minor",),
    "fast": ("fast", "upbeat", "brisk"), "slow": ("slow",), "noise": ("noise", "hiss"),
    "electric": ("electric",), "electronic": ("electronic",), "hi-hat": ("hi-hat",), "snare": ("snare",),
    "bark": ("bark",), "tick": ("tick",), "high-pitched": ("high-pitched",),
    "high-frequency": ("high-frequency",), "low-frequency": ("low-frequency",), "indoor": ("indoor",),
    "outdoor": ("outdoor",),
}

_SPEAKER_NP = {
    "male": ("a man", "an adult male speaker", "a male voice", "a man's voice"),
    "female": ("a woman", "an adult female speaker", "a female voice", "a woman's voice"),
    "child": ("a young child", "a child", "a little kid"),
}
_SPEAKER_NOUN = {"male": "man", "female": "woman", "child": "child"}
_EMOTION_ADV = {
    "calm": ("calmly", "in a calm, even tone", "in a relaxed, unhurried way", "softly and calmly"),
    "excited": ("excitedly", "in an excited, animated way", "with lively excitement", "energetically"),
}
_INSTRUMENT_NP = {
    "acoustic guitar": ("an acoustic guitar", "a plucked acoustic guitar", "a nylon-string guitar"),
    "electric guitar": ("an electric guitar", "a clean electric guitar", "a slightly overdriven electric guitar"),
    "piano": ("a piano", "a bright piano", "an upright piano"),
    "synth": ("an electronic synth pad", "a warm electronic synthesizer", "a soft electronic synth"),
    "organ": ("an organ", "a sustained organ", "a drawbar organ"),
}
_SOURCE_NP = {
    "rain": ("steady rain with scattered droplets", "rain pattering on a hard surface",
             "a rainfall shower with individual drops"),
    "wind": ("gusting wind", "wind blowing in slow waves", "a whooshing wind"),
    "engine": ("the low hum of an idling engine", "a droning car engine", "a rumbling motor"),
    "siren": ("a wailing siren", "an emergency siren sweeping up and down", "a siren rising and falling"),
    "alarm": ("a repeating alarm", "an alarm sounding", "a blaring alarm tone"),
    "bird": ("birds chirping", "chirping birdsong", "a few birds twittering"),
    "dog": ("a dog barking", "a barking dog", "a dog letting out sharp barks"),
    "footsteps": ("footsteps", "someone walking with audible footsteps", "footsteps passing by"),
    "clock": ("a ticking clock", "the steady tick of a clock", "a clock ticking"),
}
_SOURCE_SHORT = {"rain": "rain", "wind": "wind", "engine": "an engine", "siren": "a siren", "alarm": "an alarm",
                 "bird": "birds", "dog": "a barking dog", "footsteps": "footsteps", "clock": "a ticking clock"}


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _instrument_key(attrs: Mapping[str, Any], instrument: str) -> str:
    return f"{attrs['guitar_type']} guitar" if instrument == "guitar" else instrument


def _speech_sentences(rng: np.random.Generator, attrs: Mapping[str, Any], speaker: str, primary: bool
                      ) -> list[str]:
    np_ = _pick(rng, _SPEAKER_NP[speaker])
    verb = _pick(rng, ("speaking", "talking"))
    adv = _pick(rng, _EMOTION_ADV[attrs["emotion"]])
    if primary:
        opener = _pick(rng, ("The recording features", "This clip captures", "The audio presents", "We hear",
                             "In this recording we hear"))
        first = f"{opener} {np_} {verb} {adv}."
    else:
        opener = _pick(rng, ("Over the music,", "On top of this,", "In the foreground,"))
        first = f"{opener} {np_} can be heard {verb} {adv}."
    if attrs["speaker"] == "child":  # still heard as high-pitched when the captioner calls it a woman's
        pitch = _pick(rng, ("The voice is distinctly high-pitched", "The voice is thin and high-pitched"))
    elif speaker == "male":
        pitch = _pick(rng, ("The voice is low and resonant", "The voice sits in a deep register"))
    else:
        pitch = _pick(rng, ("The voice sits in a clear mid-to-high register", "The voice is clear and bright"))
    if attrs["emotion"] == "excited":
        detail = _pick(rng, ("with a widely swinging pitch contour and quick, clipped syllables",
                             "with rapid syllables and sudden jumps in pitch"))
    else:
        detail = _pick(rng, ("with gentle, even intonation and unhurried pauses between phrases",
                             "with a steady pitch and a measured pace"))
    return [first, f"{pitch}, {detail}."]


def _music_sentences(rng: np.random.Generator, attrs: Mapping[str, Any], primary: bool) -> list[str]:
    instruments = [_pick(rng, _INSTRUMENT_NP[_instrument_key(attrs, i)]) for i in attrs["instruments"]]
    mode = _pick(rng, {"major": ("a major key", "a bright major key"),
                       "minor": ("a minor key", "a moody minor key")}[attrs["mode"]])
    if primary:
        subject = _pick(rng, ("A short instrumental piece", "An instrumental passage", "A gentle melody",
                              "A catchy melody"))
        first = f"{subject} in {mode} is played on {_join(instruments)}."
    else:
        first = (f"{_pick(rng, ('Underneath the voice', 'Behind the speaker', 'In the background'))}, "
                 f"instrumental music in {mode} plays on {_join(instruments)}.")
    bpm = attrs["tempo_bpm"]
    if attrs["tempo_class"] == "fast":
        tempo = _pick(rng, (f"The tempo is fast, around {bpm} BPM", f"It moves at a fast, upbeat {bpm} BPM"))
    elif attrs["tempo_class"] == "slow":
        tempo = _pick(rng, (f"The tempo is slow, roughly {bpm} BPM", f"It unfolds at a slow {bpm} BPM"))
    else:
        tempo = _pick(rng, (f"The tempo is moderate, about {bpm} BPM", f"It sits at a mid-tempo {bpm} BPM"))
    texture = ("the chords are broken into flowing arpeggios" if attrs["texture"] == "arpeggio"
               else "the harmony moves in steady block chords")
    second = f"{tempo}, and {texture}."
    sentences = [first, second]
    if attrs["drums"]:
        parts = ["a punchy kick"]
        if "snare" in attrs["drum_parts"]:
            parts.append(_pick(rng, ("a crisp snare", "a snappy snare")))
        if "hi-hat" in attrs["drum_parts"]:
            parts.append(_pick(rng, ("shimmering hi-hats", "steady eighth-note hi-hats")))
        sentences.append(f"{_pick(rng, ('A drum kit keeps time with', 'The drums provide'))} {_join(parts)}.")
    if primary:
        sentences.append(_pick(rng, {
            "major": ("The mood is bright and cheerful.", "It feels uplifting and warm."),
            "minor": ("The mood is melancholic and wistful.", "It has a dark, brooding feel."),
        }[attrs["mode"]]))
    return sentences


def _env_sentences(rng: np.random.Generator, sources: Sequence[str], primary: bool) -> list[str]:
    phrases = [_pick(rng, _SOURCE_NP[s]) for s in sources]
    if primary:
        subject = _pick(rng, ("The soundscape", "This ambient soundscape", "The atmosphere of this scene"))
        verb = _pick(rng, ("contains", "is made up of", "captures"))
        return [f"{subject} {verb} {_join(phrases)}."]
    return [f"{_cap(_join(phrases))} can be heard in the ambient background throughout."]


def _merge(a: str, b: str) -> str:
    return a[:-1] + "; " + b[:1].lower() + b[1:]


def _generate_caption(rng: np.random.Generator, attrs: Mapping[str, Any], concepts: list[str]) -> str:
    """The captioner's long description: it asserts exactly ``concepts`` (true tags after the biases)."""
    cset = set(concepts)
    speaker = None
    if attrs["speaker"]:
        speaker = "female" if ("female" in cset and attrs["speaker"] == "child") else attrs["speaker"]
    sources = [("alarm" if s == "siren" and "alarm" in cset else s) for s in attrs["env_sources"]]
    by_layer = {
        "speech": lambda primary: _speech_sentences(rng, attrs, speaker, primary),
        "music": lambda primary: _music_sentences(rng, attrs, primary),
        "environment": lambda primary: _env_sentences(rng, sources, primary),
    }
    body: list[str] = []
    for i, layer in enumerate(attrs["layers"]):
        body += by_layer[layer](i == 0)
    if attrs["quiet_rain"] and "rain" in cset:
        body.append(_pick(rng, ("Faint rain can be heard quietly in the background.",
                                "Very soft rain patters somewhere far behind everything else.")))

    acoustic = (_pick(rng, ("There is noticeable reverb on the sound",
                            "The sound is reverberant, with a lingering tail",
                            "A wash of reverb surrounds the sources"))
                if "reverb" in cset else
                _pick(rng, ("The sound is dry and close", "The acoustics are dry, with little room sound")))
    if "indoor" in cset:
        acoustic += _pick(rng, (", suggesting an indoor room", ", as if recorded in an indoor space"))
    elif "outdoor" in cset:
        acoustic += _pick(rng, (", in an open outdoor space", ", clearly an outdoor setting"))
    body.append(acoustic + ".")
    if "noise" in cset:
        body.append(_pick(rng, ("A constant hiss of background noise sits under everything.",
                                "A layer of broadband noise runs through the whole clip.")))
    freq = []
    if "high-frequency" in cset:
        what = "the hi-hats" if "hi-hat" in attrs["drum_parts"] else "the birdsong"
        freq.append(f"high-frequency detail comes from {what}")
    if "low-frequency" in cset:
        what = "the engine" if "engine" in sources else "the wind"
        freq.append(f"there is plenty of low-frequency energy from {what}")
    if "bird" in cset:
        freq.append(_pick(rng, ("the chirps are short and high-pitched", "the birds are high-pitched and quick")))
    if freq:
        body.append(_cap(_join(freq)) + ".")
    if "studio" in cset:
        body.append(_pick(rng, ("It sounds like a polished studio recording.",
                                "The production is clean, like a professional studio recording.",
                                "It has the clarity of a studio recording.")))
    else:
        body.append(_pick(rng, ("It sounds like a casual field recording.",
                                "It has the character of an on-location recording.",
                                "The production feels like an amateur recording made on the spot.")))
    while len(body) > 7:  # keep captions at 4-8 sentences by folding the tail together
        body[-2:] = [_merge(body[-2], body[-1])]

    primary = attrs["layers"][0]
    if primary == "speech":
        core = f"{_a(attrs['emotion'])} {_SPEAKER_NOUN[speaker]} speaking"
    elif primary == "music":
        tempo = {"fast": "fast", "slow": "slow", "moderate": "mid-tempo"}[attrs["tempo_class"]]
        inst = _instrument_key(attrs, attrs["instruments"][0])
        core = f"{_a(tempo)} {attrs['mode']}-key {inst} piece"
        if attrs["drums"]:
            core += " with drums"
    else:
        core = f"an ambient scene of {_join([_SOURCE_SHORT[s] for s in sources[:2]])}"
    if len(attrs["layers"]) > 1:
        core += {"speech": " with a voice on top", "music": " over background music",
                 "environment": " with rain behind it"}[attrs["layers"][1]]
    setting = "with a studio sound" if "studio" in cset else "recorded on location"
    summary = _pick(rng, (f"In summary, this recording captures {core}.", f"In summary, it is {core}, {setting}.",
                          f"In summary, the clip offers {core}."))
    return " ".join(body + [summary])


def _tag_variant(rng: np.random.Generator, concept: str) -> str:
    variants = _TAG_VARIANTS[concept]
    if len(variants) == 1 or rng.random() < 0.55:
        return variants[0]
    return _pick(rng, variants[1:])


def _extract_tags(rng: np.random.Generator, domain: str, concepts: list[str], caption: str) -> list[str]:
    tags: list[str] = []
    for concept in concepts:
        tag = _tag_variant(rng, concept)
        if tag not in tags:
            tags.append(tag)
        if len(tags) == 10:
            return tags
    lowered = caption.lower()
    for filler in _FILLER_TAGS[domain]:
        if len(tags) >= 5:
            break
        if filler not in tags and re.search(rf"\b{re.escape(filler)}\b", lowered):
            tags.append(filler)
    if len(tags) < 5:
        raise AssertionError(f"caption has too few taggable words: {caption!r}")
    return tags


# ---- human-style original captions (ground truth only, no biases) ------------------------------------------
_HUMAN_SPEAKER = {"male": ("A man", "A male speaker", "A guy"), "female": ("A woman", "A female speaker", "A lady"),
                  "child": ("A child", "A young kid", "A little child")}
_HUMAN_SPEAK = {"calm": ("speaks calmly", "talks in a calm voice", "is calmly talking"),
                "excited": ("speaks excitedly", "talks in an excited voice", "is talking with excitement")}
_HUMAN_SOURCE = {
    "rain": ("rain falls steadily", "it is raining", "rain is falling"),
    "wind": ("wind blows strongly", "the wind is blowing", "wind gusts"),
    "engine": ("an engine hums", "a car engine idles", "a motor runs"),
    "siren": ("a siren wails", "an emergency siren sounds", "a siren goes off"),
    "bird": ("birds chirp", "birds are singing", "some birds tweet"),
    "dog": ("a dog barks", "a dog is barking", "a dog barks repeatedly"),
    "footsteps": ("someone walks by", "footsteps approach", "a person is walking"),
    "clock": ("a clock ticks", "a clock is ticking", "a clock ticks steadily"),
}
_HUMAN_TAILS = ("for a few seconds", "throughout the short clip", "in this short recording", "again and again")


def _human_music(rng: np.random.Generator, attrs: Mapping[str, Any]) -> str:
    mood = _pick(rng, {"major": ("cheerful", "happy", "bright"), "minor": ("sad", "gloomy", "melancholy")}
                 [attrs["mode"]])
    inst = attrs["instruments"][0]
    if attrs["tempo_class"] == "fast":
        mood = _pick(rng, (mood, "upbeat"))
    elif attrs["tempo_class"] == "slow":
        mood = _pick(rng, (mood, "slow"))
    clause = f"{_a(mood)} {inst} {_pick(rng, ('tune plays', 'melody is playing', 'song plays'))}"
    if attrs["drums"] and rng.random() < 0.5:
        clause += " with drums"
    return clause


def _human_caption(rng: np.random.Generator, attrs: Mapping[str, Any]) -> str:
    clauses = []
    for layer in attrs["layers"]:
        if layer == "speech":
            clauses.append(f"{_pick(rng, _HUMAN_SPEAKER[attrs['speaker']]).lower()} "
                           f"{_pick(rng, _HUMAN_SPEAK[attrs['emotion']])}")
        elif layer == "music":
            clauses.append(_human_music(rng, attrs))
        else:
            order = list(attrs["env_sources"])
            if len(order) > 1 and rng.random() < 0.5:
                order = order[::-1]
            clauses += [_pick(rng, _HUMAN_SOURCE[s]) for s in order]
    if attrs["quiet_rain"] and rng.random() < 0.3:
        clauses.append("rain falls softly in the background")
    clauses = clauses[:2]  # people describe the main thing or two and skip the rest
    text = clauses[0]
    if len(clauses) > 1:
        text += _pick(rng, (" while ", " as ", ", and ")) + clauses[1]
    if len(text.split()) > 15:
        text = clauses[0]
    while len(text.split()) < 6:
        text += " " + _pick(rng, _HUMAN_TAILS)
    return _cap(text) + "."


def _original_captions(rng: np.random.Generator, attrs: Mapping[str, Any]) -> list[str]:
    captions = [_human_caption(rng, attrs)]
    if rng.random() < 0.5:
        for _ in range(3):
            other = _human_caption(rng, attrs)
            if other != captions[0]:
                captions.append(other)
                break
    return captions


# --------------------------------------------------------------------------------------------------------------
# Per-clip assembly and the public entry point.
# --------------------------------------------------------------------------------------------------------------
def _apply_biases(rng: np.random.Generator, record: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    concepts = set(record["true_tags"])
    fired = []
    for bias in CAPTIONER_BIASES:
        # Draw for every bias whose condition holds, in declaration order, so one bias firing never shifts
        # another bias's draw for the same clip.
        if not bias_applies(bias.name, record) or not rng.random() < bias.rate:
            continue
        fired.append(bias.name)
        if bias.name == "child_called_female":
            concepts.discard("child")
            concepts.add("female")
        elif bias.name == "siren_called_alarm":
            concepts.discard("siren")
            concepts.add("alarm")
        elif bias.kind == "omission":
            concepts.discard(bias.tag)
        else:
            concepts.add(bias.tag)
    return sorted(concepts, key=_CONCEPT_RANK.__getitem__), fired


def _make_clip(seed: int, index: int, audio_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    # Independent streams per concern: changing a synthesiser never reshuffles the scenes or the captions.
    scene_rng, audio_rng, bias_rng, text_rng = (np.random.default_rng(s)
                                                for s in np.random.SeedSequence([seed, index]).spawn(4))
    clip_id = f"demo-{index:06d}"
    source, domain, n, attrs = _sample_scene(scene_rng)
    record: dict[str, Any] = {"clip_id": clip_id, "domain": domain, "source": source,
                              "true_tags": _true_concepts(attrs), "attributes": attrs}
    caption_tags, fired = _apply_biases(bias_rng, record)
    record["applied_biases"] = fired
    record["caption_tags"] = caption_tags

    audio = _render_clip(audio_rng, n, domain, attrs)
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    sf.write(str(audio_dir / f"{clip_id}.wav"), pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")

    caption = _generate_caption(text_rng, attrs, caption_tags)
    tags = _extract_tags(text_rng, domain, caption_tags, caption)
    duration = n / SAMPLE_RATE
    cut = {
        "id": clip_id, "start": 0.0, "duration": duration, "channel": 0,
        "supervisions": [{
            "id": clip_id, "recording_id": clip_id, "start": 0.0, "duration": duration, "channel": 0,
            "custom": {"audio_tag": tags, "caption": caption, "original_caption": _original_captions(text_rng, attrs),
                       "captioner": CAPTIONER, "domain": domain, "source": source},
        }],
        "recording": {
            "id": clip_id, "sources": [{"type": "file", "channels": [0], "source": f"audio/{clip_id}.wav"}],
            "sampling_rate": SAMPLE_RATE, "num_samples": n, "duration": duration, "channel_ids": [0],
        },
        "type": "MonoCut",
    }
    return cut, record


def build_demo_corpus(out_dir: Path, n_clips: int = 600, seed: int = 0) -> DemoCorpusFiles:
    """Synthesise ``n_clips`` clips into ``out_dir`` (audio/, manifest.jsonl.gz, truth.jsonl, biases.json).

    The same ``(n_clips, seed)`` gives byte-identical files; files of an earlier, larger build are not removed.
    """
    if n_clips < 1:
        raise ValueError(f"n_clips must be at least 1, got {n_clips}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    out_dir = Path(out_dir)
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    cut_lines, truth_lines = [], []
    for index in range(n_clips):
        cut, record = _make_clip(seed, index, audio_dir)
        cut_lines.append(json.dumps(cut))
        truth_lines.append(json.dumps(record))

    manifest_path = out_dir / "manifest.jsonl.gz"
    truth_path = out_dir / "truth.jsonl"
    biases_path = out_dir / "biases.json"
    # mtime=0 and no file name in the gzip header keep the manifest byte-identical across builds.
    manifest_path.write_bytes(gzip.compress(("\n".join(cut_lines) + "\n").encode("utf-8"), mtime=0))
    truth_path.write_text("\n".join(truth_lines) + "\n", encoding="utf-8")
    biases_path.write_text(json.dumps([asdict(b) for b in CAPTIONER_BIASES], indent=2) + "\n", encoding="utf-8")
    return DemoCorpusFiles(out_dir=out_dir, manifest_path=manifest_path, truth_path=truth_path,
                           biases_path=biases_path, n_clips=n_clips, seed=seed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the synthetic UTS Studio demo corpus.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n-clips", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    files = build_demo_corpus(args.out_dir, n_clips=args.n_clips, seed=args.seed)
    print(f"built {files.n_clips} clips in {time.perf_counter() - started:.1f} s -> {files.manifest_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


_CONCEPT_OF_SURFACE = {surface: concept for concept, forms in _TAG_VARIANTS.items() for surface in forms}


def concept_of_tag(tag: str) -> str | None:
    """The demo concept a surface tag stands for (``"hihat"`` -> ``"hi-hat"``); None for filler words.

    Lets a simulated annotator judge a tag against a clip's ``true_tags`` the way a listener would.
    """
    return _CONCEPT_OF_SURFACE.get(tag)
