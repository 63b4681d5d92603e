"""Out-of-sample scores (training/oos_scores.py): folds partition the clips, cross-fitting never scores a clip with
a head that saw it (random labels stay at chance out of sample, unlike in sample), and a finished tiny run's
export is scored into RUN_DIR/model_audit with the layout the library reads."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.errors import UsageError
from training.oos_scores import (
    DECAY_DIM,
    DECAY_T60_EDGES_S,
    DYNAMICS_DIM,
    FINE_DECAY_BAND_GROUPS,
    FINE_DECAY_WINDOW_FRAMES,
    cross_fit,
    fbank_decay_rates,
    fbank_dynamics,
    fit_head_and_score,
    fold_of,
    main,
    repeated_cross_fit,
    score_run,
)
from training.pretrain import main as pretrain_main


def test_folds_partition_the_clips_evenly_and_reproducibly():
    ids = [f"c{i}" for i in range(23)]
    folds = fold_of(ids, 5, seed=3)
    assert sorted(np.bincount(folds)) == [4, 4, 5, 5, 5]
    assert (fold_of(ids, 5, seed=3) == folds).all()
    assert not (fold_of(ids, 5, seed=4) == folds).all()


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def test_cross_fitted_scores_do_not_see_the_label_they_score():
    """Random labels on random features: a head scored on its own training clips memorises them (AUC >> 0.5);
    cross-fitted, every clip is scored by a head that never saw it, so the labels are not predictable."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 60)).astype(np.float32)
    y = (rng.uniform(size=(120, 3)) < 0.5).astype(np.uint8)
    everyone = np.arange(120)
    in_sample = fit_head_and_score(x, y, everyone, everyone, seed=0, l2=0.0)
    out_of_sample = cross_fit(x, y, fold_of([str(i) for i in range(120)], 5, 0), seed=0)
    for j in range(3):
        assert _auc(in_sample[:, j], y[:, j]) > 0.9
        assert abs(_auc(out_of_sample[:, j], y[:, j]) - 0.5) < 0.15


def test_repeated_cross_fits_stay_out_of_sample_and_average_the_splits():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 60)).astype(np.float32)
    y = (rng.uniform(size=(120, 3)) < 0.5).astype(np.uint8)
    ids = [str(i) for i in range(120)]
    scores, folds = repeated_cross_fit(x, y, ids, n_folds=5, seed=0, repeats=3)
    assert (folds == fold_of(ids, 5, 0)).all()   # the first repeat's folds are the ones recorded
    for j in range(3):
        assert abs(_auc(scores[:, j], y[:, j]) - 0.5) < 0.15
    single = cross_fit(x, y, fold_of(ids, 5, 0), seed=0)
    assert not np.allclose(scores, single)        # other splits were averaged in
    assert np.allclose(repeated_cross_fit(x, y, ids, n_folds=5, seed=0, repeats=1)[0], single)
    with pytest.raises(UsageError, match="repeats"):
        repeated_cross_fit(x, y, ids, n_folds=5, seed=0, repeats=0)


def _frames(envelope: np.ndarray) -> np.ndarray:
    """80 log-mel bins following one level envelope (dB-like), 10 ms frames."""
    return np.repeat(envelope[:, None], 80, axis=1).astype(np.float32)


def test_fbank_dynamics_measure_rises_falls_and_modulation_rates():
    t = np.arange(400)
    n_bands = 20
    steady = fbank_dynamics(_frames(np.zeros(400)))
    assert not steady[: 6 * n_bands].any()              # a steady level neither rises nor falls
    ramp = fbank_dynamics(_frames(0.01 * t)).reshape(-1)[: 6 * n_bands].reshape(3, 2, n_bands)  # lag, rise/fall
    assert np.allclose(ramp[:, 0, 0], [0.01, 0.04, 0.16], atol=1e-5) and not ramp[:, 1].any()
    features = fbank_dynamics(_frames(np.sin(2 * np.pi * 6.0 * t * 0.01)))   # a 6 Hz level modulation
    modulation = features[6 * n_bands:].reshape(5, 16)  # octave bands 0.5-2, 2-4, 4-8, 8-16, 16-32 Hz
    assert modulation.mean(1).argmax() == 2
    short = fbank_dynamics(_frames(np.zeros(3)))        # shorter than the longest lag: zeros there, no error
    assert short.shape == (DYNAMICS_DIM,) and np.isfinite(short).all()


# fbank_decay_rates bins: 0 = falls faster than 25 ms, 1..8 = falls in the T60 octaves 25 ms-6.4 s, 9 = steady,
# 10..17 = rises in the same octaves from slow to fast, 18 = rises faster than 25 ms.
STEADY_BIN = len(DECAY_T60_EDGES_S)


def _fall_bin(t60_s: float) -> int:
    """The histogram bin of a fall at the rate of a 60 dB decay in t60_s seconds."""
    return int(np.searchsorted(DECAY_T60_EDGES_S, t60_s))


def test_fbank_decay_rates_bin_a_level_by_how_fast_it_falls_and_rises():
    units_per_60_db = np.log(1e6) / 4.0        # the Frontend's normalised log-mel units (ln / FBANK_STD)
    per_frame = 0.01 * units_per_60_db          # 10 ms frames
    t = np.arange(300)
    steady = fbank_decay_rates(_frames(np.zeros(300)))
    assert steady.shape == (DECAY_DIM,) and steady[STEADY_BIN] == pytest.approx(1.0)
    falling = fbank_decay_rates(_frames(-per_frame / 0.6 * t))     # 60 dB per 0.6 s: T60 0.4-0.8 s bin
    assert falling[_fall_bin(0.6)] == pytest.approx(1.0) and _fall_bin(0.6) == 5
    rising = fbank_decay_rates(_frames(per_frame / 0.3 * t))       # mirrored: the 0.2-0.4 s rise bin
    assert rising[2 * STEADY_BIN - _fall_bin(0.3)] == pytest.approx(1.0)
    assert fbank_decay_rates(_frames(np.zeros(5))).tolist() == [0.0] * DECAY_DIM   # shorter than the window


def test_a_reverberant_tone_decays_at_its_room_rate_where_a_dry_one_stops():
    """Tone bursts through the real front end, dry and convolved with a room-like impulse response (exponentially
    decaying noise, T60 0.5 s and 1.0 s, half wet): the reverberant clips' falls sit in the room's T60 bins, the
    dry clip's level mostly holds or stops fast."""
    import torch

    from training.features import SAMPLE_RATE_HZ, Frontend

    rng = np.random.default_rng(0)
    t = np.arange(4 * SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    dry = 0.3 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 1320 * t)) * ((t % 0.5) < 0.2)

    def reverberant(t60_s: float) -> np.ndarray:
        tail = np.arange(int(t60_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
        wet = np.convolve(dry, rng.standard_normal(len(tail)) * np.exp(-6.91 * tail / t60_s))[: len(dry)]
        return 0.5 * dry + 0.5 * wet * np.sqrt((dry ** 2).mean() / (wet ** 2).mean())

    def rates(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            frames, n_frames = Frontend()(torch.from_numpy(x).float()[None], torch.tensor([len(x)]))
        return fbank_decay_rates(frames[0, : int(n_frames[0])].numpy())

    room_falls = slice(_fall_bin(0.3), _fall_bin(1.2) + 1)          # T60 0.2-1.6 s
    dry_rates, short_room, long_room = rates(dry), rates(reverberant(0.5)), rates(reverberant(1.0))
    assert dry_rates[room_falls].sum() < 0.15
    assert short_room[room_falls].sum() > 0.4 and long_room[room_falls].sum() > 0.4
    assert dry_rates[STEADY_BIN] > 0.4 > short_room[STEADY_BIN]
    # The most common fall rate follows the room: T60 0.5 s in the 0.4-0.8 s bin, 1.0 s in the 0.8-1.6 s bin.
    assert int(np.argmax(short_room[:STEADY_BIN])) == _fall_bin(0.5)
    assert int(np.argmax(long_room[:STEADY_BIN])) == _fall_bin(1.0)


def test_per_bin_decay_rates_hear_a_dry_chord_change_stop_where_a_room_lets_it_ring():
    """Sustained chords that change every half second with no gap (organ-like, no drums: the demo's hardest case
    for hearing a room), dry and through a room-like impulse response. Per mel bin over 30 ms (the "fine-decay"
    features) the dry notes that end stop faster than 100 ms; through a room almost none does, they ring at the room's
    rate. The 20 band groups over 100 ms smear the same dry stops into slow falls: no fast fall in either."""
    import torch

    from training.features import SAMPLE_RATE_HZ, Frontend

    rng = np.random.default_rng(0)
    t = np.arange(4 * SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    first = (t % 1.0) < 0.5
    dry = (sum(0.2 * np.sin(2 * np.pi * f * t) for f in (262, 330, 392)) * first
           + sum(0.2 * np.sin(2 * np.pi * f * t) for f in (294, 370, 440)) * ~first)

    def reverberant(t60_s: float) -> np.ndarray:
        tail = np.arange(int(t60_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
        wet = np.convolve(dry, rng.standard_normal(len(tail)) * np.exp(-6.91 * tail / t60_s))[: len(dry)]
        return 0.6 * dry + 0.4 * wet * np.sqrt((dry ** 2).mean() / (wet ** 2).mean())

    def rates(x: np.ndarray, **kwargs) -> np.ndarray:
        with torch.no_grad():
            frames, n_frames = Frontend()(torch.from_numpy(x).float()[None], torch.tensor([len(x)]))
        return fbank_decay_rates(frames[0, : int(n_frames[0])].numpy(), **kwargs)

    fine = {"groups": FINE_DECAY_BAND_GROUPS, "window": FINE_DECAY_WINDOW_FRAMES}
    fast_falls = slice(0, _fall_bin(0.1))                            # a 60 dB fall within 100 ms or faster
    dry_fast = rates(dry, **fine)[fast_falls].sum()
    assert dry_fast > 0.01
    for t60_s in (0.5, 1.0):
        room = rates(reverberant(t60_s), **fine)
        assert room[fast_falls].sum() < dry_fast / 10
        assert room[_fall_bin(0.3): _fall_bin(1.2) + 1].sum() > 0.2   # its falls sit in the room's T60 bins
    assert rates(dry)[fast_falls].sum() == 0.0                      # 20 groups, 100 ms: the stops are smeared


def test_a_learnable_tag_is_scored_well_out_of_sample():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((100, 8)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.uint8)
    scores = cross_fit(x, y, fold_of([str(i) for i in range(100)], 4, 0), seed=0)
    assert _auc(scores[:, 0], y[:, 0]) > 0.95


def test_the_context_head_disputes_a_tag_the_caption_s_context_makes_the_captioner_say():
    """A captioner that says "reverb" on half the clips it calls "music", whatever they sound like (the co-occurrence
    hallucination), and "guitar" exactly where a guitar sounds. The audio head learns music's sound as evidence for
    reverb and half agrees with every such claim; the context head carries that share on its "music" input and,
    with the context held at its mean, judges the claim by the audio alone. A tag its own audio shows (guitar) keeps
    its high probability either way."""
    rng = np.random.default_rng(0)
    n = 600
    x = rng.standard_normal((n, 6)).astype(np.float32)
    music = x[:, 0] > 0                       # the sound of music
    guitar = x[:, 1] > 0.5                    # a guitar sounds
    reverb = music & (rng.uniform(size=n) < 0.5)   # said at random on half the music: not in the audio
    y = np.stack([music, guitar, reverb], axis=1).astype(np.uint8)
    folds = fold_of([str(i) for i in range(n)], 5, 0)
    audio = cross_fit(x, y, folds, seed=0)
    discounted = cross_fit(x, y, folds, seed=0, context=True)
    assert audio[reverb, 2].mean() > 0.35                     # half agrees with the hallucination (0.40)
    assert discounted[reverb, 2].mean() < audio[reverb, 2].mean() - 0.1   # disputes it (0.27)
    assert discounted[guitar, 1].mean() > 0.65 and audio[guitar, 1].mean() > 0.65   # 0.71 both
    assert abs(discounted[guitar, 1].mean() - audio[guitar, 1].mean()) < 0.03
    # No clip is scored by a head that saw it, context or not: random labels stay at chance.
    noise = (rng.uniform(size=(n, 2)) < 0.5).astype(np.uint8)
    held_out = cross_fit(x, np.concatenate([y, noise], axis=1), folds, seed=0, context=True)
    for j in (3, 4):
        assert abs(_auc(held_out[:, j], noise[:, j - 3]) - 0.5) < 0.1


@pytest.fixture
def tiny_run(tiny_export, tmp_path) -> Path:
    run = tmp_path / "run1"
    assert pretrain_main(["--export", str(tiny_export), "--out", str(run), "--objective", "mtc", "--size", "tiny",
                          "--steps", "2", "--device", "cpu", "--set", "max_batch_s=8", "--set", "max_clip_s=2",
                          "--set", "num_workers=0", "--set", "val_every=2"]) == 0
    return run


def test_a_finished_run_is_scored_into_its_run_directory(tiny_run, capsys):
    assert main(["--run", str(tiny_run), "--folds", "3", "--features", "both"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert (meta["folds"], meta["features"], meta["n_clips"], meta["n_tags"]) == (3, "both", 24, 4)
    assert (meta["fbank_stats"], meta["repeats"]) == ("fine-decay", 3)
    # tiny encoder: d_model 64, mean + std -> 128; fbank: 80 mel bins, mean + std -> 160, + their dynamics and
    # decay rates of 20 band groups and of every bin
    assert meta["feature_dim"] == 128 + 160 + DYNAMICS_DIM + 2 * DECAY_DIM == 128 + 160 + 200 + 2 * 19
    out = tiny_run / "model_audit"
    with np.load(out / "oos_scores.npz") as data:
        assert list(data["labels"]) == ["tone", "low", "high", "noise"]
        assert sorted(np.bincount(data["folds"])) == [8, 8, 8]
        clip = list(data["clip_ids"]).index("clip-3")
    # The matrices are plain .npy beside it, so that an audit of a large corpus memory-maps them.
    scores = np.load(out / "oos_scores.scores.npy", mmap_mode="r")
    targets = np.load(out / "oos_scores.targets.npy", mmap_mode="r")
    assert scores.shape == targets.shape == (24, 4) and (scores.dtype, targets.dtype) == (np.float32, np.uint8)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert list(targets[clip]) == [1, 0, 1, 1]  # clip 3: tone, high (odd), noise (multiple of 3)
    assert json.loads((tiny_run / "model_audit" / "oos_scores.json").read_text()) == meta
    # The context head (the default), which hallucinations are found with, is written beside the audio head.
    assert (meta["context"], meta["disputes_matrix"]) == ("discount", True)
    disputes = np.load(out / "oos_scores.disputes.npy", mmap_mode="r")
    assert disputes.shape == (24, 4) and disputes.dtype == np.float32
    assert not np.allclose(disputes, scores)
    assert ((disputes >= 0) & (disputes <= 1)).all()
    # One head for both: no disputes matrix is left beside the new scores.
    assert main(["--run", str(tiny_run), "--folds", "3", "--features", "fbank", "--context", "none"]) == 0
    assert json.loads(capsys.readouterr().out)["disputes_matrix"] is False
    assert not (out / "oos_scores.disputes.npy").exists()
    # The third version's log-mel features (band-group decay rates only), the second (dynamics, no decay rates)
    # and the first (moments only, one cross-fit) stay available.
    assert main(["--run", str(tiny_run), "--folds", "3", "--features", "fbank", "--fbank-stats", "decay"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert (meta["feature_dim"], meta["fbank_stats"]) == (160 + DYNAMICS_DIM + DECAY_DIM, "decay")
    assert main(["--run", str(tiny_run), "--folds", "3", "--features", "fbank", "--fbank-stats", "dynamics"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert (meta["feature_dim"], meta["fbank_stats"]) == (160 + DYNAMICS_DIM, "dynamics")
    assert main(["--run", str(tiny_run), "--folds", "3", "--features", "fbank", "--fbank-stats", "moments",
                 "--repeats", "1"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert (meta["feature_dim"], meta["fbank_stats"], meta["repeats"]) == (160, "moments", 1)


def test_bad_requests_are_refused_with_the_reason(tiny_run, tmp_path, capsys):
    with pytest.raises(UsageError, match="at least 2"):
        score_run(tiny_run, n_folds=1, features="fbank", device="cpu")
    with pytest.raises(UsageError, match="cannot be split"):
        score_run(tiny_run, n_folds=25, features="fbank", device="cpu")
    with pytest.raises(UsageError, match="fbank-stats"):
        score_run(tiny_run, n_folds=3, features="fbank", device="cpu", fbank_stats="spectrum")
    with pytest.raises(UsageError, match="--context"):
        score_run(tiny_run, n_folds=3, features="fbank", device="cpu", context="mean")
    import torch

    if not torch.cuda.is_available():   # a launched job asking for the GPU on a node without one
        with pytest.raises(UsageError, match="--device cuda: this machine has no CUDA device"):
            score_run(tiny_run, n_folds=3, features="fbank", device="cuda")
        assert not (tiny_run / "model_audit").exists()
    assert main(["--run", str(tmp_path / "missing"), "--features", "fbank"]) == 2
    assert "config.json" in capsys.readouterr().err
