"""Real audio files in the formats a corpus arrives in (stereo 44.1 kHz FLAC, 8 kHz WAV, OGG/Vorbis, MP3 ...),
written by soundfile from a real clip of ../shared/data when it is there, else from a synthesised tone+noise.

Used by the ingest/export compatibility tests and by bench/uts_recipe_check.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class AudioKind:
    name: str
    suffix: str
    format: str
    subtype: str | None
    rate: int
    channels: int
    seconds: float


KINDS = (
    AudioKind("stereo_44k_flac", ".flac", "FLAC", "PCM_16", 44_100, 2, 3.0),
    AudioKind("mono_8k_wav", ".wav", "WAV", "PCM_16", 8_000, 1, 2.5),
    AudioKind("mono_22k_ogg", ".ogg", "OGG", "VORBIS", 22_050, 1, 2.0),
    AudioKind("stereo_48k_wav24", ".wav", "WAV", "PCM_24", 48_000, 2, 1.5),
    AudioKind("mono_32k_mp3", ".mp3", "MP3", "MPEG_LAYER_III", 32_000, 1, 2.2),
    AudioKind("mono_16k_wav", ".wav", "WAV", "PCM_16", 16_000, 1, 0.6),  # shorter than the recipe's 1 s window
)


def _source_wave(rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    n = int(round(rate * seconds))
    real = sorted((SHARED_DATA / "esc50" / "audio").glob("*.wav")) if SHARED_DATA.is_dir() else []
    if real:
        import soundfile
        from scipy.signal import resample_poly

        data, source_rate = soundfile.read(str(real[seed % len(real)]), dtype="float32")
        data = resample_poly(data, rate, source_rate).astype(np.float32)
        data = np.resize(data, n)  # repeat when the clip is shorter than asked
    else:
        rng = np.random.default_rng(seed)
        t = np.arange(n) / rate
        data = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    # A different signal per channel, so that picking or mixing channels is visible in the samples.
    return np.stack([data * (1.0 - 0.4 * c) for c in range(channels)], axis=1)


def mp3_writable() -> bool:
    import soundfile

    return "MP3" in soundfile.available_formats() and "MPEG_LAYER_III" in soundfile.available_subtypes("MP3")


def write_kind(folder: Path, kind: AudioKind, stem: str, seed: int = 0) -> Path:
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}{kind.suffix}"
    wave = _source_wave(kind.rate, kind.seconds, kind.channels, seed)
    soundfile.write(str(path), np.clip(wave, -1, 1), kind.rate, format=kind.format, subtype=kind.subtype)
    return path


def write_all_kinds(folder: Path) -> dict[str, Path]:
    """One file per kind (MP3 only where this libsndfile writes it): name -> path."""
    out = {}
    for seed, kind in enumerate(KINDS):
        if kind.format == "MP3" and not mp3_writable():
            continue
        out[kind.name] = write_kind(folder, kind, kind.name, seed)
    return out
