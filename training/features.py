"""Audio reading and the on-device front end: Kaldi-compatible 80-dim log-mel fbank and SpecAugment.

Place in the flow: the DataLoader workers read and crop waveforms (``read_audio``); the training step turns a
padded waveform batch into normalised fbank frames on the model's device (``Frontend``).
The fbank is lhotse's pure-torch ``Wav2LogFilterBank`` (25 ms Povey window, 10 ms hop, pre-emphasis 0.97, DC
removal, 512-point FFT, 80 mel bins 20 Hz..Nyquist-400 Hz, no dither, snip_edges=False): it runs on any device,
inside autograd-free code, and matches kaldi-native-fbank within 1e-3 (tests/training/test_features.py).
Example: ``feats, n_frames = Frontend().to("cpu")(audio, audio_lens)``
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.errors import AudioError

SAMPLE_RATE_HZ = 16000
HOP_SAMPLES = 160
N_MELS = 80
# Fixed affine normalisation of log-mel values (float audio in [-1, 1]: the log floor is -15.9, speech/music
# frames sit around -6..+2). A constant keeps train and probe identical and needs no statistics pass.
FBANK_MEAN = -6.0
FBANK_STD = 4.0


def read_audio(path: str | Path, clip_id: str, *, offset_s: float = 0.0, duration_s: float | None = None,
               target_rate: int = SAMPLE_RATE_HZ, channels: tuple[int, ...] | None = None) -> np.ndarray:
    """Mono float32 samples at ``target_rate`` of [offset_s, offset_s + duration_s); resampled when needed.

    Multi-channel audio is downmixed (mean) before the fbank: over ``channels`` when given (the channels the cut
    declares: one for a MonoCut, several for a MultiCut), else over all of the file's channels.
    """
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as handle:
            rate = handle.samplerate
            start = int(round(offset_s * rate))
            frames = -1 if duration_s is None else int(round(duration_s * rate))
            handle.seek(min(start, handle.frames))
            data = handle.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, OSError, RuntimeError) as exc:
        raise AudioError(path, clip_id, str(exc)) from None
    if channels is not None:
        usable = [c for c in channels if c < data.shape[1]]
        if not usable:
            raise AudioError(path, clip_id, f"the cut uses channel(s) {list(channels)}; the file has {data.shape[1]}")
        data = data[:, usable]
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != target_rate:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(rate, target_rate)
        mono = resample_poly(mono, target_rate // g, rate // g).astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def n_fbank_frames(n_samples: torch.Tensor) -> torch.Tensor:
    """Frames the snip_edges=False fbank yields for n samples: round(n / hop) (Kaldi's rule)."""
    return torch.div(n_samples + HOP_SAMPLES // 2, HOP_SAMPLES, rounding_mode="floor")


class Frontend(nn.Module):
    """(B, samples) float waveform + lengths -> (B, frames, 80) normalised log-mel + frame lengths."""

    def __init__(self) -> None:
        super().__init__()
        from lhotse.features.kaldi.layers import Wav2LogFilterBank

        self.fbank = Wav2LogFilterBank(sampling_rate=SAMPLE_RATE_HZ, num_filters=N_MELS, snip_edges=False)

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=audio.device.type, enabled=False):
            feats = self.fbank(audio.float())
        n_frames = torch.clamp(n_fbank_frames(audio_lens), min=1, max=feats.shape[1])
        feats = (feats - FBANK_MEAN) / FBANK_STD
        mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < n_frames[:, None]
        return feats * mask[..., None], n_frames


def spec_augment(feats: torch.Tensor, n_frames: torch.Tensor, *, time_masks: int, time_width: int,
                 freq_masks: int, freq_width: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero random time and frequency bands per clip, vectorised on the device (no host syncs)."""
    batch, frames, bins = feats.shape
    device = feats.device
    keep = torch.ones(batch, frames, bins, dtype=torch.bool, device=device)
    t_idx = torch.arange(frames, device=device)[None, :]
    f_idx = torch.arange(bins, device=device)[None, :]
    for _ in range(time_masks):
        width = torch.randint(0, time_width + 1, (batch, 1), device=device, generator=generator)
        start = (torch.rand(batch, 1, device=device, generator=generator)
                 * (n_frames[:, None] - width).clamp(min=1)).long()
        keep &= ~((t_idx >= start) & (t_idx < start + width))[:, :, None]
    for _ in range(freq_masks):
        width = torch.randint(0, freq_width + 1, (batch, 1), device=device, generator=generator)
        start = (torch.rand(batch, 1, device=device, generator=generator) * (bins - width + 1)).long()
        keep &= ~((f_idx >= start) & (f_idx < start + width))[:, None, :]
    return feats * keep
