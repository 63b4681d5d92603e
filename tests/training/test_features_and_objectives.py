"""Numbers checked against references: fbank vs kaldi-native-fbank, AP vs scikit-learn, PAR loss by hand,
attention pooling blind to padding, PAR slot targets."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from training.data import slot_targets
from training.features import Frontend, read_audio
from training.metrics import mean_average_precision
from training.model import IGNORE_INDEX, par_loss

FBANK_TOLERANCE = 1e-3  # absolute, on natural-log mel energies (measured max difference ~2e-4)


def kaldi_reference(wave: np.ndarray) -> np.ndarray:
    knf = pytest.importorskip("kaldi_native_fbank", reason="kaldi-native-fbank (requirements-dev.txt) is the reference")
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = False
    opts.mel_opts.num_bins = 80
    opts.mel_opts.high_freq = -400  # the convention Frontend uses (lhotse/icefall): Nyquist - 400 Hz
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, wave.tolist())
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


def test_fbank_matches_kaldi_native_fbank():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    wave[20000:] *= 0.01  # a quiet tail: the log floor region must match too
    ref = kaldi_reference(wave)
    frontend = Frontend()
    feats, n_frames = frontend(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    from training.features import FBANK_MEAN, FBANK_STD

    ours = feats[0].numpy() * FBANK_STD + FBANK_MEAN
    assert int(n_frames[0]) == ref.shape[0] == 200
    assert np.abs(ours[: ref.shape[0]] - ref).max() < FBANK_TOLERANCE


def test_batched_fbank_frames_of_a_short_clip_match_it_alone():
    rng = np.random.default_rng(1)
    long, short = rng.standard_normal(16000).astype(np.float32) * 0.1, rng.standard_normal(8000).astype(np.float32) * 0.1
    frontend = Frontend()
    audio = torch.zeros(2, 16000)
    audio[0], audio[1, :8000] = torch.from_numpy(long), torch.from_numpy(short)
    batched, n_frames = frontend(audio, torch.tensor([16000, 8000]))
    alone, _ = frontend(torch.from_numpy(short)[None], torch.tensor([8000]))
    assert n_frames.tolist() == [100, 50]
    # All but the last frame (whose window reaches past the clip end into the padding) are identical.
    assert torch.allclose(batched[1, :49], alone[0, :49], atol=1e-4)
    assert torch.all(batched[1, 50:] == 0)


def test_read_audio_resamples_8khz_to_16khz(tmp_path):
    t = np.arange(8000) / 8000
    sf.write(tmp_path / "a.wav", (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), 8000)
    wave = read_audio(tmp_path / "a.wav", "a")
    assert len(wave) == 16000
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) - 1000) <= 1  # 1 Hz bins over one second


def test_map_matches_scikit_learn():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    targets = (rng.random((60, 7)) < 0.3).astype(np.float32)
    targets[:, 6] = 0  # a tag without positives is left out of the mean
    scores = np.round(rng.random((60, 7)), 2)  # ties
    mean_ap, per_tag = mean_average_precision(scores, targets)
    expected = [average_precision_score(targets[:, k], scores[:, k]) for k in range(6)]
    assert per_tag[6] is None
    assert np.allclose(per_tag[:6], expected, atol=1e-12)
    assert math.isclose(mean_ap, float(np.mean(expected)), abs_tol=1e-12)


def test_par_slot_targets_are_rank_ordered_with_eos_then_ignored():
    # K = 10 tags, [EOS] = 10; 5 slots hold at most 4 tags.
    assert slot_targets((2, 5), 5, 10) == [2, 5, 10, IGNORE_INDEX, IGNORE_INDEX]
    assert slot_targets((0, 1, 3, 4, 7, 9), 5, 10) == [0, 1, 3, 4, 10]  # capped: the 4 best-ranked + [EOS]


def test_par_loss_on_a_hand_made_batch():
    # 2 clips x 3 slots x (K=2 tags + EOS). Logits chosen so that softmaxes are easy to write down.
    logits = torch.tensor([[[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0], [0.0, 0.0, 5.0]],
                           [[0.0, math.log(3.0), 0.0], [1.0, 1.0, 1.0], [9.0, 9.0, 9.0]]])
    slots = torch.tensor([[0, 1, 2], [1, 2, IGNORE_INDEX]])
    # -log p: slot (0,0) tag 0: 1/3; (0,1) tag 1: 1/4; (0,2) EOS: e^5/(2+e^5); (1,0) tag 1: 3/5; (1,1) EOS: 1/3.
    by_hand = -(math.log(1 / 3) + math.log(1 / 4) + math.log(math.exp(5) / (2 + math.exp(5)))
                + math.log(3 / 5) + math.log(1 / 3)) / 5
    assert math.isclose(float(par_loss(logits, slots)), by_hand, rel_tol=1e-6)


def test_attention_pooling_ignores_padded_frames():
    from training.probe import _attention_probe_module

    torch.manual_seed(0)
    pool = _attention_probe_module(16, 3, n_heads=4)
    x = torch.randn(2, 10, 16)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    before = pool(x, mask)
    x2 = x.clone()
    x2[1, 6:] = torch.randn(4, 16) * 100
    after = pool(x2, mask)
    assert torch.allclose(before, after, atol=1e-6)
    x3 = x.clone()
    x3[1, 2] += 5.0  # a real frame does change the output
    assert not torch.allclose(before[1], pool(x3, mask)[1], atol=1e-4)


def test_encoder_mean_pool_ignores_fully_padded_frames():
    from training.config import build_config
    from training.model import UtsModel

    torch.manual_seed(0)
    model = UtsModel(build_config("tiny", {"objective": "mtc"}, []), 5, 3).eval()
    feats = torch.randn(1, 200, 80)
    n = torch.tensor([80])
    a = model(feats, n)["mtc"]
    feats[0, 100:] = torch.randn(100, 80) * 10  # beyond the last real frame's receptive field
    assert torch.allclose(a, model(feats, n)["mtc"], atol=1e-5)
