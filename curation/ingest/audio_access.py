"""Which audio files the app may serve, and the pictures of a clip (waveform + log-mel spectrogram).

Place in the flow: clips (audio_path from ingest) -> (this module) -> Browse / Audit / Vocabulary pages.
Audio is served only from the configured roots: ``UTS_AUDIO_ROOTS`` (paths joined by ':'), else the folders
that ingests resolved audio against (recorded per ingest). A path is resolved with symlinks followed before
the check, so ``../`` tricks and links pointing out of a root are refused.

Example::

    path = servable_audio_path(con, clip_audio_path)      # raises AudioAccessError outside the roots
    png = clip_picture_png(path)                           # waveform over a log-mel spectrogram
"""
from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

import duckdb
import numpy as np

from curation import settings
from curation.errors import UtsError
from curation.store import ingest as store_ingest


class AudioAccessError(UtsError, PermissionError):
    """An audio path outside the configured roots, or a file that is not there."""


def audio_roots(con: duckdb.DuckDBPyConnection) -> list[Path]:
    configured = settings.AUDIO_ROOTS.value()
    if configured:
        return [Path(p).resolve() for p in configured.split(os.pathsep) if p.strip()]
    return [Path(p).resolve() for p in store_ingest.ingest_audio_roots(con)]


def servable_audio_path(con: duckdb.DuckDBPyConnection, audio_path: str | None,
                        roots: list[Path] | None = None) -> Path:
    if not audio_path:
        raise AudioAccessError("this clip has no audio file")
    if "\x00" in audio_path:
        raise AudioAccessError(f"{audio_path!r}: a path with a NUL byte; refused")
    real = Path(os.path.realpath(audio_path))
    for root in roots if roots is not None else audio_roots(con):
        real_root = Path(os.path.realpath(root))
        if real == real_root or real_root in real.parents:
            if not real.is_file():
                raise AudioAccessError(f"{audio_path}: the file is not there (moved since ingest?)")
            return real
    raise AudioAccessError(f"{audio_path}: outside the configured audio roots; refused (set "
                           f"{settings.AUDIO_ROOTS.name} to serve another folder)")


def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    def hz_to_mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    mels = np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.floor((n_fft + 1) * hz / sample_rate).astype(int)
    bank = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(1, n_mels + 1):
        left, centre, right = bins[m - 1], bins[m], bins[m + 1]
        if centre > left:
            bank[m - 1, left:centre] = (np.arange(left, centre) - left) / (centre - left)
        if right > centre:
            bank[m - 1, centre:right] = (right - np.arange(centre, right)) / (right - centre)
    return bank


# A perceptually ordered dark-to-bright ramp (viridis-like end points), so quiet is dark and loud is bright.
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def _colour(values: np.ndarray) -> np.ndarray:
    position = np.clip(values, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    frac = (position - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)


@lru_cache(maxsize=256)
def _picture_cached(path: str, mtime_ns: int, width: int) -> bytes:
    import soundfile
    from PIL import Image

    audio, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    n_fft, hop = 512, max(1, sample_rate // 100)
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    log_mel = np.log10(power @ _mel_filterbank(sample_rate, n_fft, 64).T + 1e-10)
    span = log_mel.max() - log_mel.min()
    spectrogram = _colour((log_mel - log_mel.min()) / (span if span > 0 else 1)).transpose(1, 0, 2)[::-1]
    spec_image = Image.fromarray(spectrogram).resize((width, 128))
    wave = np.full((60, width, 3), 250, dtype=np.uint8)
    columns = np.array_split(mono, width)
    peak = max(float(np.abs(mono).max()), 1e-9)
    for x, chunk in enumerate(columns):
        if len(chunk):
            top = int(30 - 29 * chunk.max() / peak)
            bottom = int(30 - 29 * chunk.min() / peak)
            wave[min(top, bottom):max(top, bottom) + 1, x] = (49, 51, 63)
    canvas = Image.new("RGB", (width, 60 + 128), (255, 255, 255))
    canvas.paste(Image.fromarray(wave), (0, 0))
    canvas.paste(spec_image, (0, 60))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def clip_picture_png(path: Path, width: int = 600) -> bytes:
    """Waveform (top) and log-mel spectrogram (bottom, 64 bands, 10 ms hop) as a PNG, cached per file version."""
    return _picture_cached(str(path), path.stat().st_mtime_ns, width)
