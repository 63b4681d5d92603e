"""Out-of-sample tag probabilities for every clip of a run's export: k-fold cross-fitting of the MTC head.

Place in the flow: after ``training.pretrain`` (a finished run directory) -> this module writes
RUN_DIR/model_audit/oos_scores.{npz,json} and the clips x tags matrices beside them (``write_scores``) ->
``curation.audit.model_audit`` reads them, stores them per
clip and tag and ranks suspect tags (confident learning). Training never opens the database: the clips and their
asserted tags come from the run's export folder (config.json names it), exactly what the run trained on.

Method (why this one): the MTC objective is a linear layer on the masked mean of the encoder's frames. We keep the run's
encoder frozen, pool every clip's frames once (mean and standard deviation over time: the std adds how the sound
changes, which a reverberant tail or a passing siren shows; for the log-mel frames also their dynamics,
``fbank_dynamics``, and how fast their levels fall and rise, ``fbank_decay_rates``), and refit that linear multi-label
head k times, each time on k-1 folds, scoring the held-out fold; this cross-fit is repeated with REPEATS fold seeds and
averaged. So every clip's score comes from heads that never saw its labels. This is a few seconds per fold on CPU, where
refitting k encoders would cost k full runs. What it does not remove: the frozen encoder itself was trained on every
clip's labels, so labels it memorised can leak into its features. ``--features fbank`` uses label-free log-mel
statistics instead (no leak), and ``both`` (the default) concatenates the two: on the demo corpus with a 150-step tiny
encoder, both found the planted errors best and the encoder alone worst (bench/model_audit_eval.py, bench/RESULTS.md).
``--fbank-stats moments --repeats 1`` gives the first version (mean and std only, one cross-fit), ``--fbank-stats
dynamics`` the second (no decay rates), ``--fbank-stats decay`` the third (decay rates of 20 band groups only).

Example: ``python -m training.oos_scores --run runs/r1 --folds 5 --device cpu``
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from curation.errors import UtsError
from training.errors import CheckpointError, UsageError

FEATURE_KINDS = ("encoder", "fbank", "both")
# What the log-mel part holds: "moments" = mean and std per mel bin over time (the first version); "dynamics" (the
# second) adds how the levels rise, fall and fluctuate (``fbank_dynamics``). Chosen without the demo's truth: of
# the generic sets tried, dynamics predicted the captioner's own labels best out of sample (mean BCE 0.2006 vs
# 0.2174, macro AUC 0.881 vs 0.857 on the demo export; bench/RESULTS.md "Model-based audit: detection quality").
FBANK_STATS = ("moments", "dynamics", "decay", "fine-decay")
# "decay" adds to the dynamics how fast each band's level falls and rises, as a histogram over reverberation-time
# bins (``fbank_decay_rates``): a room's tail makes levels fall at the rate its T60 sets (60 dB in T60 seconds),
# where dry sound stops within tens of ms. Chosen the same way, without the truth: out-of-sample mean BCE / macro
# AUC of the captioner's own labels on the demo export (600 clips, 60 tags), log-mel features alone, 3 cross-fits,
# fold seeds 0 / 7: dynamics 0.1898 / 0.888 (seed 7: 0.1892 / 0.889); + falls only, on frames above the band's
# median 0.1870 / 0.891; + falls and rises, every frame (adopted, as written here) 0.1853 / 0.893 (seed 7:
# 0.1847 / 0.894). Windows of 50, 70 or 150-200 ms, two or three window lengths, 2 or 4 band parts, 10 band
# groups, finer bins, only windows a line fits well (R^2 >= 0.5-0.9), or a second histogram (50 or 200 ms, per
# band half, low-level frames only) were no better (within 0.0005 BCE); mean levels after local peaks and
# envelope autocorrelation were worse, floor statistics no better (bench/RESULTS.md "Model-based audit").
# "fine-decay" (the fourth pass) adds a second such histogram per mel bin (80, not 20 band groups) over 30 ms windows:
# averaging four bins mixes a note that stops in one bin with one that goes on in the next, and a 100 ms window
# smooths a fast stop into a slow fall, so the pooled histogram missed a tail in dense music (sustained chords, no
# drums). Chosen the same way, without the truth (demo export, log-mel alone, 3 cross-fits): mean BCE 0.1853 ->
# 0.1836, the captioner's own "reverb" label predicted with out-of-sample AUC 0.892 -> 0.897; per bin at 20 ms
# 0.1833 / 0.895 (equal within noise; 30 ms kept, better on the tag it is for; one cross-fit each, 30 < 40 < 50 <
# 100 < 200 ms in BCE); 40 band groups at 30 ms 0.1838 / 0.897; the per-bin histogram instead of the 20-group one
# 0.1862 (worse: the two complement each other); a third at 60 ms no better (bench/RESULTS.md, fourth pass). It
# makes a head trained on the demo's true reverb flag tell reverberant from dry music far better (AUC 0.90 -> 0.99),
# but moved the audit's own reverb figure only within its noise: the limits there are elsewhere (RESULTS).
DEFAULT_FBANK_STATS = "fine-decay"
DYNAMICS_BAND_GROUPS = 20
DYNAMICS_LAGS = (1, 4, 16)          # frames of 10 ms
MODULATION_BAND_GROUPS = 16
MODULATION_EDGES_HZ = (0.5, 2.0, 4.0, 8.0, 16.0, 32.0)
FRAME_SHIFT_S = 0.01
DYNAMICS_DIM = 2 * len(DYNAMICS_LAGS) * DYNAMICS_BAND_GROUPS + (len(MODULATION_EDGES_HZ) - 1) * MODULATION_BAND_GROUPS
DECAY_BAND_GROUPS = 20
DECAY_WINDOW_FRAMES = 10            # the level's least-squares slope over 100 ms
# Rate bin edges as the reverberation time that falls at that rate: 60 dB in T60 seconds. Octaves from 25 ms (a
# dry stop) to 6.4 s; the same edges for rises (mirrored); slower than 6.4 s either way is one "steady" bin (so a
# constant level, digital silence included, does not fall on either side of zero by rounding): 2 * 9 + 1 bins.
DECAY_T60_EDGES_S = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4)
DECAY_DIM = 2 * len(DECAY_T60_EDGES_S) + 1
FINE_DECAY_BAND_GROUPS = 80         # every mel bin of the Frontend's 80 (training.features.N_MELS)
FINE_DECAY_WINDOW_FRAMES = 3        # the slope over 30 ms
# 60 dB of power in the Frontend's normalised log-mel units: ln(10^6) nats / FBANK_STD (training.features: 4.0;
# the constant is repeated so this numpy code does not import torch).
UNITS_PER_60_DB = float(np.log(1e6)) / 4.0
# Cross-fitting is repeated with this many fold assignments (seeds) and the out-of-sample probabilities averaged:
# every repeat still scores a clip with a head that never saw it; the average is less tied to one random split
# (demo export: mean BCE 0.2006 -> 0.1896 with 3 repeats).
REPEATS = 3
# What the audit disputes an ASSERTED tag with. A captioner's hallucinations follow its caption's context (it says
# "reverb" because it said "music": the co-occurrence bias known from image captioning, Rohrbach et al. 2018,
# "Object Hallucination in Image Captioning"). A head fitted on such labels learns the context's sound (music)
# as evidence for the tag and then agrees with the hallucination wherever that sound is. "discount" (the default)
# fits a second head that also sees each clip's other asserted tags, so the label's share the context explains is
# carried by those inputs, and scores asserted tags with the context held at its mean: P(tag | the audio, beyond
# the caption's other tags). Omissions keep P(tag | audio) from the first head (with the context a dropped tag's
# partner, "female" for a child, would explain its absence away). The discounted probabilities are written as
# DISPUTES_MATRIX (every cell: hallucinations are confident learning on them, with their own thresholds); the
# scores themselves stay P(tag | audio), for misses and for the model's merge and prune evidence. "none": one head, as before. Measured on the demo (bench/RESULTS.md,
# sixth pass): every asserted-tag bias found as well or better; not tuned (the context weights take the head's
# own L2 penalty).
CONTEXT_MODES = ("discount", "none")
DEFAULT_CONTEXT = "discount"
OUT_DIR = "model_audit"
SCORES_FILE = "oos_scores.npz"
SCORES_MATRIX = "oos_scores.scores.npy"     # curation.audit.model_audit reads these names (no training import)
TARGETS_MATRIX = "oos_scores.targets.npy"
DISPUTES_MATRIX = "oos_scores.disputes.npy"  # float32: the context head's P, held-out (CONTEXT_MODES)
META_FILE = "oos_scores.json"
# L2 penalty on each tag's weight vector: mean BCE + (L2_STRENGTH / n_train) * mean_k ||w_k||^2, i.e. a fixed
# penalty on the summed loss, as in a plain logistic regression (shrinkage fades as clips grow). A head free to fit
# its training folds learns the planted errors there too and then disputes fewer of them out of sample: 40 clips
# needed ~0.03 (the tests' tone corpus), 600 demo clips ~0.001-0.003 (measured; bench/model_audit_eval.py).
L2_STRENGTH = 1.0
METHOD = ("k-fold cross-fitted linear multi-label head (BCE + L2, Adam), repeated over fold seeds and averaged, on "
          "frozen pooled features (mean+std over time; log-mel dynamics and decay rates, per band group and per bin)")


def fold_of(clip_ids: list[str], n_folds: int, seed: int) -> np.ndarray:
    """Fold number per clip: a seeded permutation cut into k nearly equal parts (stable for a given seed)."""
    order = np.random.default_rng(seed).permutation(len(clip_ids))
    folds = np.empty(len(clip_ids), dtype=np.int32)
    folds[order] = np.arange(len(clip_ids)) % n_folds
    return folds


def fbank_dynamics(frames: np.ndarray, *, groups: int = DYNAMICS_BAND_GROUPS) -> np.ndarray:
    """Label-free statistics of how one clip's log-mel frames (T, 80) change over time, 20 + 16 band groups:

    - for lags of 10, 40 and 160 ms, the mean rise and the mean fall of each band group's level over that lag
      (how much the sound moves at each time scale: steady noise and a reverberant wash move less at 10 ms than
      separate dry notes);
    - the log power of each band group's level envelope in octave bands of modulation frequency, 0.5-32 Hz
      (syllable and note rates; reverberation and steady noise flatten the fast ones).

    A clip shorter than a lag gets zeros for that lag. Returns a float32 vector of DYNAMICS_DIM values."""
    frames = np.asarray(frames, dtype=np.float32)
    n_frames, n_bins = frames.shape
    bands = frames[:, : n_bins - n_bins % groups].reshape(n_frames, groups, -1).mean(2)
    parts = []
    for lag in DYNAMICS_LAGS:
        if n_frames > lag:
            step = bands[lag:] - bands[:-lag]
            parts += [np.clip(step, 0, None).mean(0), np.clip(-step, 0, None).mean(0)]
        else:
            parts += [np.zeros(groups, np.float32)] * 2
    mod_bands = frames[:, : n_bins - n_bins % MODULATION_BAND_GROUPS].reshape(
        n_frames, MODULATION_BAND_GROUPS, -1).mean(2)
    envelope = mod_bands - mod_bands.mean(0)
    power = np.abs(np.fft.rfft(envelope, axis=0)) ** 2
    rates = np.fft.rfftfreq(n_frames, d=FRAME_SHIFT_S)
    for low, high in itertools.pairwise(MODULATION_EDGES_HZ):
        inside = (rates >= low) & (rates < high)
        parts.append(np.log(power[inside].mean(0) + 1e-6) if inside.any()
                     else np.zeros(MODULATION_BAND_GROUPS, np.float32))
    return np.concatenate(parts).astype(np.float32)


def fbank_decay_rates(frames: np.ndarray, *, groups: int = DECAY_BAND_GROUPS,
                      window: int = DECAY_WINDOW_FRAMES) -> np.ndarray:
    """Label-free histogram of how fast one clip's band levels fall and rise, in reverberation-time bins.

    Each of ``groups`` band groups of the log-mel frames (T, 80) gets its level's least-squares slope over every
    ``window`` frames (100 ms); the slopes of all bands and windows are counted in bins whose edges are the rates of a
    60 dB decay in DECAY_T60_EDGES_S seconds (falls on one side, rises mirrored on the other, slower than the slowest
    edge "steady") and the counts divided by their total. Why: a reverberant room turns every stop into a decay at the
    rate its T60 sets (0.2-2 s in rooms), while dry sound falls within a few frames or holds its level; the mean falls
    of ``fbank_dynamics`` mix these, this histogram keeps them apart. Generic, not tied to the demo: it reads only the
    level envelope. A clip shorter than the window gets zeros. Returns a float32 vector of DECAY_DIM values (falls
    faster than 25 ms first, then slower falls, steady, slower rises ... rises faster than 25 ms last)."""
    frames = np.asarray(frames, dtype=np.float32)
    n_frames, n_bins = frames.shape
    if n_frames < window:
        return np.zeros(DECAY_DIM, np.float32)
    bands = frames[:, : n_bins - n_bins % groups].reshape(n_frames, groups, -1).mean(2, dtype=np.float64)
    t = np.arange(window, dtype=np.float64) - (window - 1) / 2
    windows = np.lib.stride_tricks.sliding_window_view(bands, window, axis=0)   # (T - window + 1, groups, window)
    slopes = windows @ (t / (t * t).sum())                                      # level units per frame
    fall_edges = -FRAME_SHIFT_S * UNITS_PER_60_DB / np.asarray(DECAY_T60_EDGES_S)  # steepest first
    edges = np.concatenate([[-np.inf], fall_edges, -fall_edges[::-1], [np.inf]])
    counts = np.histogram(slopes.reshape(-1), bins=edges)[0]
    return (counts / counts.sum()).astype(np.float32)


def pooled_features(export, ckpt: dict | None, kind: str, *, max_clip_s: float, device: str,
                    batch_s: float = 120.0, fbank_stats: str = DEFAULT_FBANK_STATS) -> tuple[list[str], np.ndarray]:
    """(clip ids in export order, (N, D) float32): mean and std over time of encoder frames and/or fbank frames,
    with ``fbank_stats="dynamics"`` the fbank frames' temporal statistics (``fbank_dynamics``), with "decay" also
    their rates of fall and rise (``fbank_decay_rates``), with "fine-decay" (the default) also those rates per mel
    bin over 30 ms.
    Audio is read as training reads it (the cut's offset and channels), the first ``max_clip_s`` seconds."""
    import torch

    from training.config import config_from_dict
    from training.features import SAMPLE_RATE_HZ, Frontend, read_audio
    from training.model import Encoder

    dev = torch.device(device)
    frontend = Frontend().to(dev)
    encoder = None
    if kind in ("encoder", "both"):
        cfg = config_from_dict(ckpt["config"])
        encoder = Encoder(cfg)
        state = {k[len("encoder."):]: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}
        encoder.load_state_dict(state)
        encoder.eval().to(dev)
    clips = list(export.clips.values())
    durations = np.array([min(c.duration_s, max_clip_s) for c in clips])
    order = np.argsort(durations, kind="stable")
    rows: list = [None] * len(clips)

    def mean_std(frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(frames.shape[1], device=frames.device)[None, :] < lengths[:, None]).float()[..., None]
        n = mask.sum(1).clamp(min=1.0)
        mean = (frames * mask).sum(1) / n
        var = (((frames - mean[:, None]) ** 2) * mask).sum(1) / n
        return torch.cat([mean, var.clamp(min=0).sqrt()], dim=1)

    start = 0
    with torch.no_grad():
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * durations[order[end]] <= batch_s:
                end += 1
            idx = order[start:end]
            waves = []
            for i in idx:
                clip = clips[i]
                wave = read_audio(clip.audio_path, clip.clip_id, offset_s=clip.start_s,
                                  duration_s=min(max_clip_s, clip.duration_s), channels=clip.channels)
                waves.append(wave[: int(max_clip_s * SAMPLE_RATE_HZ)])
            lens = [max(len(w), 400) for w in waves]
            audio = torch.zeros(len(idx), max(lens))
            for row, w in enumerate(waves):
                audio[row, : len(w)] = torch.from_numpy(w)
            fb, n_frames = frontend(audio.to(dev), torch.tensor(lens).to(dev))
            parts = []
            if encoder is not None:
                frames, mask = encoder(fb, n_frames)
                parts.append(mean_std(frames.float(), mask.sum(1)))
            if kind in ("fbank", "both"):
                parts.append(mean_std(fb.float(), n_frames))
            pooled = torch.cat(parts, dim=1).cpu().numpy()
            if kind in ("fbank", "both") and fbank_stats in ("dynamics", "decay", "fine-decay"):
                frames_np = fb.float().cpu().numpy()
                counts = n_frames.cpu().numpy()
                clip_frames = [frames_np[row, : int(counts[row])] for row in range(len(idx))]
                extra = [np.stack([fbank_dynamics(f) for f in clip_frames])]
                if fbank_stats in ("decay", "fine-decay"):
                    extra.append(np.stack([fbank_decay_rates(f) for f in clip_frames]))
                if fbank_stats == "fine-decay":
                    extra.append(np.stack([fbank_decay_rates(f, groups=FINE_DECAY_BAND_GROUPS,
                                                             window=FINE_DECAY_WINDOW_FRAMES) for f in clip_frames]))
                pooled = np.concatenate([pooled, *extra], axis=1)
            for row, i in enumerate(idx):
                rows[i] = pooled[row]
            start = end
    return [c.clip_id for c in clips], np.stack(rows).astype(np.float32)


def fit_head_and_score(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, *, seed: int,
                       steps: int = 300, lr: float = 1e-2, l2: float | None = None, device: str = "cpu",
                       context: bool = False) -> np.ndarray:
    """Fit a linear multi-label head (sigmoid per tag, BCE) on ``train`` and return P(tag | clip) on ``test``.
    Features are standardised with the training fold's statistics only. Full-batch Adam, fixed settings (no
    tuning on the held-out fold). On the CPU one thread (the demo's matrices are tiny: threads only contend on a
    shared machine); with ``device="cuda"`` the fits run on the GPU, which a real corpus needs (360k clips x 3,000
    tags is ~10^9 logits per step).

    ``context=True``: the head also sees, for each tag, the clip's OTHER asserted tags (``y`` with the tag's own
    column masked; a sparse product, since a clip asserts a few tags of thousands), with the same L2 penalty, and
    the returned probability holds that context at its training mean: what the audio says about the tag beyond
    what the caption's other tags make the captioner say (CONTEXT_DISCOUNT explains why)."""
    import torch
    import torch.nn.functional as F

    dev = torch.device(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        xt = torch.from_numpy(x).to(dev)
        tr = torch.from_numpy(train).to(dev)
        mu, sd = xt[tr].mean(0), xt[tr].std(0).clamp(min=1e-5)
        xt = (xt - mu) / sd
        yt = torch.from_numpy(y.astype(np.float32)).to(dev)
        head = torch.nn.Linear(x.shape[1], y.shape[1]).to(dev)
        # Start from each tag's training prevalence: rare tags begin near their base rate, not at 0.5.
        prevalence = yt[tr].mean(0).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            head.bias.copy_(torch.log(prevalence / (1 - prevalence)))
        l2 = L2_STRENGTH / max(len(train), 1) if l2 is None else l2
        params = list(head.parameters())
        if context:
            k = y.shape[1]
            rows, cols = np.nonzero(y[train])
            # (train clips x tags) 0/1, sparse; centred by subtracting its column means through the weights.
            asserted = torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, cols])), torch.ones(len(rows)),
                                               (len(train), k), device=dev, check_invariants=True).coalesce()
            context_mean = yt[tr].mean(0)
            not_self = 1.0 - torch.eye(k, device=dev)
            context_weight = torch.zeros(k, k, device=dev, requires_grad=True)
            params.append(context_weight)
        opt = torch.optim.Adam(params, lr=lr)
        for _ in range(steps):
            logits = head(xt[tr])
            penalty = head.weight.pow(2).sum(1).mean()
            if context:
                weight = context_weight * not_self
                logits = logits + torch.sparse.mm(asserted, weight.T) - context_mean @ weight.T
                penalty = penalty + weight.pow(2).sum(1).mean()
            loss = F.binary_cross_entropy_with_logits(logits, yt[tr]) + l2 * penalty
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            # With context, the held-out clip's context sits at the training mean: its centred term is zero.
            return torch.sigmoid(head(xt[torch.from_numpy(test).to(dev)])).cpu().numpy()
    finally:
        torch.set_num_threads(threads)


def cross_fit(x: np.ndarray, y: np.ndarray, folds: np.ndarray, *, seed: int, device: str = "cpu",
              context: bool = False) -> np.ndarray:
    """(N, K) out-of-sample probabilities: clip i is scored by the head fitted on every fold but its own
    (``context``: see ``fit_head_and_score``)."""
    scores = np.zeros(y.shape, dtype=np.float32)
    for f in range(int(folds.max()) + 1):
        test = np.nonzero(folds == f)[0]
        train = np.nonzero(folds != f)[0]
        scores[test] = fit_head_and_score(x, y, train, test, seed=seed + f, device=device, context=context)
    return scores


def repeated_cross_fit(x: np.ndarray, y: np.ndarray, clip_ids: list[str], *, n_folds: int, seed: int,
                       repeats: int = REPEATS, device: str = "cpu",
                       context: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(scores, folds of the first repeat): the mean of ``repeats`` cross-fits, each with its own seeded fold
    assignment; each of them scores a clip only with heads that never saw it, so their mean does too."""
    if repeats < 1:
        raise UsageError(f"--repeats {repeats}: expected at least 1")
    total = np.zeros(y.shape, dtype=np.float64)
    first_folds = None
    for r in range(repeats):
        folds = fold_of(clip_ids, n_folds, seed + 1000 * r)
        first_folds = folds if first_folds is None else first_folds
        total += cross_fit(x, y, folds, seed=seed + 1000 * r, device=device, context=context)
    return (total / repeats).astype(np.float32), first_folds


def score_run(run_dir: Path, *, n_folds: int, features: str, device: str, seed: int = 0,
              export_dir: Path | None = None, fbank_stats: str = DEFAULT_FBANK_STATS, repeats: int = REPEATS,
              context: str = DEFAULT_CONTEXT) -> dict:
    """Compute and write RUN_DIR/model_audit/oos_scores.{npz,json} (and the matrices); returns the metadata."""
    from training.data import load_export
    from training.probe import file_sha256, load_checkpoint, resolve_checkpoint
    started = time.perf_counter()
    run_dir = Path(run_dir).resolve()
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise CheckpointError(run_dir, "a folder without config.json", "a run directory written by training.pretrain",
                              "point --run at the run's folder")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if export_dir is None:
        named = (config.get("export") or {}).get("dir")
        if not named:
            raise UsageError(f"{config_path}: field 'export.dir' is missing; expected the export folder the run "
                             "trained on (give --export DIR)")
        export_dir = Path(named)
    if n_folds < 2:
        raise UsageError(f"--folds {n_folds}: expected at least 2 (each clip is scored by a head fitted without it)")
    if features not in FEATURE_KINDS:
        raise UsageError(f"--features {features}: expected one of {', '.join(FEATURE_KINDS)}")
    if fbank_stats not in FBANK_STATS:
        raise UsageError(f"--fbank-stats {fbank_stats}: expected one of {', '.join(FBANK_STATS)}")
    if repeats < 1:
        raise UsageError(f"--repeats {repeats}: expected at least 1")
    if context not in CONTEXT_MODES:
        raise UsageError(f"--context {context}: expected one of {', '.join(CONTEXT_MODES)}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: this machine has no CUDA device torch can use; expected a GPU node "
                             "(or use --device cpu)")
    ckpt_path = resolve_checkpoint(run_dir) if features != "fbank" else None
    ckpt = load_checkpoint(ckpt_path) if ckpt_path is not None else None
    max_clip_s = float((config.get("config") or {}).get("max_clip_s", 10.0))
    export = load_export(Path(export_dir), max_clip_s=max_clip_s)
    if ckpt is not None and ckpt["labels"] != export.labels:
        raise UsageError(f"{ckpt_path}: the run was trained on another label map than {export.dir}")
    if len(export.clips) < n_folds:
        raise UsageError(f"{export.dir}: {len(export.clips)} clips cannot be split into {n_folds} folds; "
                         "use fewer --folds")
    clip_ids, x = pooled_features(export, ckpt, features, max_clip_s=max_clip_s, device=device,
                                  fbank_stats=fbank_stats)
    y = np.zeros((len(clip_ids), export.n_tags), dtype=np.uint8)
    for row, clip_id in enumerate(clip_ids):
        y[row, list(export.clips[clip_id].tag_ids)] = 1
    scores, folds = repeated_cross_fit(x, y, clip_ids, n_folds=n_folds, seed=seed, repeats=repeats, device=device)
    disputes = None
    if context == "discount":
        discounted, _ = repeated_cross_fit(x, y, clip_ids, n_folds=n_folds, seed=seed, repeats=repeats,
                                           device=device, context=True)
        disputes = discounted
    meta = {"run_id": config.get("run_id", run_dir.name), "export_id": export.record.get("export_id"),
            "export_dir": str(export.dir), "checkpoint": str(ckpt_path) if ckpt_path else None,
            "checkpoint_sha256": file_sha256(ckpt_path) if ckpt_path else None, "features": features,
            "fbank_stats": fbank_stats if features != "encoder" else None, "repeats": repeats,
            "feature_dim": int(x.shape[1]), "folds": n_folds, "seed": seed, "context": context,
            "method": METHOD + ("; asserted tags disputed by a second head that also sees the caption's other tags, "
                                "held at their mean" if context == "discount" else ""),
            "n_clips": len(clip_ids), "n_tags": export.n_tags, "seconds": round(time.perf_counter() - started, 3)}
    return write_scores(run_dir, clip_ids, export.labels, scores, y, folds, meta, disputes=disputes)


def write_scores(run_dir: Path, clip_ids: list[str], labels: list[str], scores: np.ndarray, targets: np.ndarray,
                 folds: np.ndarray, meta: dict, *, disputes: np.ndarray | None = None) -> dict:
    """Write RUN_DIR/model_audit/: oos_scores.npz (clip ids, labels, folds), the (clips x tags) matrices as plain
    .npy files beside it (SCORES_MATRIX: float32 probabilities, TARGETS_MATRIX: uint8 0/1, and DISPUTES_MATRIX
    when ``disputes`` is given: the context head's probabilities, which hallucinations are found with), and
    oos_scores.json last (``meta`` gains created_at); returns the metadata.

    Why plain .npy: the reader memory-maps them and works through them in row blocks, so auditing a real corpus
    (360k clips x 3,000 tags is 4.3 GB of float32) never needs them in memory at once; a compressed npz member
    can only be read whole. The metadata file goes first and comes back last: a scoring interrupted midway leaves
    no oos_scores.json, which readers take as "no scores" (never a new matrix beside old ids)."""
    from training.rundir import now_iso, write_json_atomic

    out = Path(run_dir) / OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).unlink(missing_ok=True)
    scores = np.asarray(scores, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.uint8)
    if scores.shape != targets.shape or scores.shape != (len(clip_ids), len(labels)):
        raise UsageError(f"scores {scores.shape}, targets {targets.shape}: expected both ({len(clip_ids)}, "
                         f"{len(labels)}) (clips x tags)")
    matrices = [(SCORES_MATRIX, scores), (TARGETS_MATRIX, targets)]
    (out / DISPUTES_MATRIX).unlink(missing_ok=True)  # never an old run's disputes beside new scores
    if disputes is not None:
        disputes = np.asarray(disputes, dtype=np.float32)
        if disputes.shape != scores.shape:
            raise UsageError(f"disputes {disputes.shape}: expected the scores' shape {scores.shape}")
        matrices.append((DISPUTES_MATRIX, disputes))
    for name, matrix in matrices:
        tmp = out / (name + ".tmp.npy")
        np.save(tmp, matrix)
        tmp.replace(out / name)
    tmp = out / (SCORES_FILE + ".tmp.npz")
    np.savez_compressed(tmp, clip_ids=np.array(clip_ids), labels=np.array(labels), folds=np.asarray(folds))
    tmp.replace(out / SCORES_FILE)
    meta = {**meta, "format": 2, "disputes_matrix": disputes is not None, "created_at": now_iso()}
    write_json_atomic(out / META_FILE, meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.oos_scores", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a finished run directory (config.json, checkpoints/)")
    parser.add_argument("--export", type=Path, default=None, help="export folder (default: the one config.json names)")
    parser.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5)")
    parser.add_argument("--features", choices=FEATURE_KINDS, default="both",
                        help="encoder: the run's frozen encoder; fbank: label-free log-mel statistics; both (default)")
    parser.add_argument("--fbank-stats", choices=FBANK_STATS, default=DEFAULT_FBANK_STATS,
                        help="log-mel statistics: moments (mean, std), dynamics (also rises, falls, modulation), "
                             "decay (also rates of fall and rise in reverberation-time bins) or fine-decay (also "
                             f"those rates per mel bin over 30 ms); default "
                             f"{DEFAULT_FBANK_STATS}")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help=f"cross-fits with different fold seeds, averaged (default {REPEATS})")
    parser.add_argument("--context", choices=CONTEXT_MODES, default=DEFAULT_CONTEXT,
                        help="discount (default): asserted tags are disputed by a second head that also sees the "
                             "caption's other tags, held at their mean; none: one head for both")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        meta = score_run(args.run, n_folds=args.folds, features=args.features, device=args.device, seed=args.seed,
                         export_dir=args.export, fbank_stats=args.fbank_stats, repeats=args.repeats,
                         context=args.context)
    except UtsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps(meta), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
