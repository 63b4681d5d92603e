"""TrainConfig: every knob of a pre-training run, one frozen dataclass, one line of meaning per field.

Place in the flow: built by ``training.pretrain`` from --size presets, flags and ``--set key=value`` overrides;
written whole into RUN_DIR/config.json and every checkpoint (the probe rebuilds the encoder from it).
Example: ``cfg = build_config("tiny", {"objective": "mtc", "steps": 10}, ["lr=1e-3"])``
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from training.errors import ConfigKeyError, ConfigValueError

OBJECTIVES = ("mtc", "par", "mtc+par")
SIZES = ("tiny", "small", "base")


@dataclass(frozen=True)
class TrainConfig:
    objective: str = "mtc"            # training loss: mtc (multi-tag BCE), par (parallel tag decoding) or mtc+par (sum)
    size: str = "tiny"                # preset the model dimensions came from (tiny < 1M, small ~7M, base ~75M params)
    d_model: int = 64                 # transformer width
    n_layers: int = 2                 # encoder transformer layers
    n_heads: int = 4                  # attention heads (encoder and decoder)
    ff_mult: int = 4                  # feed-forward width = ff_mult * d_model
    conv_channels: int = 32           # channels of the two stride-2 conv layers (4x time subsampling, 40 ms frames)
    dec_layers: int = 1               # PAR decoder layers (self-attention over [MASK] slots + cross-attention)
    dropout: float = 0.1              # dropout in attention outputs and feed-forward
    par_max_slots: int = 16           # cap on PAR tag slots; slots = min(max tags per clip, cap) + 1 for [EOS]
    steps: int = 1000                 # optimiser steps to train for (the run ends at this step)
    lr: float = 1e-3                  # peak AdamW learning rate
    weight_decay: float = 0.05        # AdamW decoupled weight decay
    warmup_steps: int = 100           # linear warm-up steps from 0 to lr (clipped to steps // 5 for short runs)
    min_lr_ratio: float = 0.05        # cosine decay floor as a fraction of lr
    grad_clip: float = 1.0            # max global gradient L2 norm (0 disables clipping)
    max_batch_s: float = 160.0        # audio seconds per batch per process (duration-bucketed)
    max_clip_s: float = 10.0          # clips longer than this are randomly cropped to it
    num_buckets: int = 10             # duration buckets of the DynamicBucketingSampler
    num_workers: int = 2              # DataLoader worker processes that read audio (0 = in the main process)
    seed: int = 0                     # seeds model init, batch order, crops and SpecAugment
    val_fraction: float = 0.05        # fraction of clips held out for validation mAP (chosen by hash of clip id)
    val_max_clips: int = 2000         # cap on validation clips (the first by hash order)
    val_every: int = 500              # validate every N steps (and at the last step)
    ckpt_every: int = 500             # write checkpoints/step_N.pt and last.pt every N steps (and at the end)
    keep_checkpoints: int = 3         # step_N.pt files kept (oldest removed; last.pt always kept)
    log_every: int = 10               # train metrics line every N steps (the only host-device sync points)
    spec_time_masks: int = 2          # SpecAugment time masks per clip
    spec_time_width: int = 40         # max width of a time mask in 10 ms frames
    spec_freq_masks: int = 2          # SpecAugment frequency masks per clip
    spec_freq_width: int = 15         # max width of a frequency mask in mel bins
    bf16: bool = True                 # bf16 autocast for the model on CUDA (ignored on CPU)
    compile: bool = False             # torch.compile the encoder (CUDA runs; off for CPU tests)


SIZE_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, ff_mult=4, conv_channels=32, dec_layers=1),
    "small": dict(d_model=256, n_layers=6, n_heads=4, ff_mult=4, conv_channels=64, dec_layers=2),
    "base": dict(d_model=640, n_layers=12, n_heads=10, ff_mult=4, conv_channels=128, dec_layers=2),
}


def field_names() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def _parse(name: str, kind: type, text: str) -> object:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigValueError(name, text, "a boolean (true/false)")
    try:
        return kind(text)
    except ValueError:
        raise ConfigValueError(name, text, f"a value of type {kind.__name__}") from None


def _types() -> dict[str, type]:
    names = {"int": int, "float": float, "str": str, "bool": bool}
    return {f.name: names[f.type] if isinstance(f.type, str) else f.type for f in fields(TrainConfig)}


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """``["lr=1e-3", "bf16=false"]`` -> typed values; unknown keys raise ConfigKeyError listing valid keys."""
    types = _types()
    out: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigValueError(pair, pair, "key=value")
        key, value = pair.split("=", 1)
        key = key.strip()
        if key not in types:
            raise ConfigKeyError(key, sorted(types))
        out[key] = _parse(key, types[key], value)
    return out


def validate(cfg: TrainConfig) -> TrainConfig:
    if cfg.objective not in OBJECTIVES:
        raise ConfigValueError("objective", cfg.objective, f"one of {', '.join(OBJECTIVES)}")
    if cfg.size not in SIZES:
        raise ConfigValueError("size", cfg.size, f"one of {', '.join(SIZES)}")
    positive = ("d_model", "n_layers", "n_heads", "ff_mult", "conv_channels", "dec_layers", "par_max_slots",
                "steps", "max_batch_s", "max_clip_s", "num_buckets", "val_every", "ckpt_every", "log_every")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ConfigValueError(name, getattr(cfg, name), "a positive number")
    if cfg.d_model % cfg.n_heads:
        raise ConfigValueError("n_heads", cfg.n_heads, f"a divisor of d_model={cfg.d_model}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigValueError("val_fraction", cfg.val_fraction, "a fraction in [0, 1)")
    if cfg.max_batch_s < cfg.max_clip_s:
        raise ConfigValueError("max_batch_s", cfg.max_batch_s, f">= max_clip_s={cfg.max_clip_s}")
    return cfg


def build_config(size: str, flags: dict[str, object], overrides: list[str]) -> TrainConfig:
    """Preset for ``size``, then the CLI flags, then ``--set`` overrides (last wins)."""
    if size not in SIZE_PRESETS:
        raise ConfigValueError("size", size, f"one of {', '.join(SIZES)}")
    values: dict[str, object] = {"size": size, **SIZE_PRESETS[size], **flags, **parse_overrides(overrides)}
    return validate(TrainConfig(**values))


def config_from_dict(data: dict) -> TrainConfig:
    """Rebuild a config saved in a checkpoint or config.json (unknown keys from a newer version are refused)."""
    valid = set(field_names())
    extra = sorted(set(data) - valid)
    if extra:
        raise ConfigKeyError(extra[0], sorted(valid))
    return validate(TrainConfig(**data))


def as_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)
