"""Encoder (conv subsampling + transformer with padding masks), MTC head, PAR decoder and their losses.

Place in the flow: ``training.trainer`` builds ``UtsModel`` from a TrainConfig; ``training.probe`` reuses its
``encoder`` frozen. Attention is ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels on CUDA).
PAR (parallel decoding, the paper's non-autoregressive objective): the decoder input is n_slots copies of one
learned [MASK] embedding plus learned slot-position embeddings; no causal mask; every layer self-attends over the
slots and cross-attends to the encoder frames; slot i predicts the i-th tag of the clip in vocabulary-rank order
(ascending label id), the slot after the last tag predicts [EOS] (id K), later slots are ignored in the loss.
Example: ``model = UtsModel(cfg, n_tags=800, n_slots=9); out = model(feats, n_frames)``
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from training.config import TrainConfig
from training.features import N_MELS

IGNORE_INDEX = -100


def frames_after_subsampling(n_frames: torch.Tensor) -> torch.Tensor:
    """Two conv layers, kernel 3, stride 2, no padding: t -> (t - 1) // 2 twice (then at least 1)."""
    t = torch.div(n_frames - 1, 2, rounding_mode="floor")
    t = torch.div(t - 1, 2, rounding_mode="floor")
    return t.clamp(min=1)


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) bool, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, memory: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        b, tq, d = x.shape
        h = self.n_heads
        q = self.q(x).view(b, tq, h, d // h).transpose(1, 2)
        k, v = self.kv(memory).view(b, memory.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, tq, d))


class Block(nn.Module):
    """Pre-LN transformer block; with ``cross`` it adds a cross-attention sublayer (decoder)."""

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, dropout: float, cross: bool = False) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout)
        self.ln_x = nn.LayerNorm(d_model) if cross else None
        self.cross = Attention(d_model, n_heads, dropout) if cross else None
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(ff_mult * d_model, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask, memory=None, memory_mask=None):
        h = self.ln1(x)
        x = x + self.drop(self.attn(h, h, mask))
        if self.cross is not None:
            x = x + self.drop(self.cross(self.ln_x(x), memory, memory_mask))
        return x + self.drop(self.ff(self.ln2(x)))


def sinusoid(n: int, d: int, device: torch.device) -> torch.Tensor:
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


class Encoder(nn.Module):
    """(B, T, 80) fbank + frame counts -> (B, T/4, d_model) frames + their padding mask (True = real)."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        c = cfg.conv_channels
        self.conv = nn.Sequential(nn.Conv2d(1, c, 3, stride=2), nn.GELU(), nn.Conv2d(c, c, 3, stride=2), nn.GELU())
        freq_out = ((N_MELS - 1) // 2 - 1) // 2
        self.proj = nn.Linear(c * freq_out, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.ff_mult, cfg.dropout)
                                    for _ in range(cfg.n_layers))
        self.ln = nn.LayerNorm(cfg.d_model)
        self.d_model = cfg.d_model

    def forward(self, feats: torch.Tensor, n_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if feats.shape[1] < 7:  # the two convolutions need 7 frames; shorter clips are zero-padded
            feats = F.pad(feats, (0, 0, 0, 7 - feats.shape[1]))
        x = self.conv(feats[:, None])  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))
        x = x + sinusoid(t, self.d_model, x.device).to(x.dtype)
        lengths = frames_after_subsampling(n_frames).clamp(max=t)
        mask = padding_mask(lengths, t)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln(x), mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[..., None].to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class ParDecoder(nn.Module):
    """[MASK] x n_slots + slot positions -> non-causal self-attention + cross-attention -> (B, n_slots, K + 1)."""

    def __init__(self, cfg: TrainConfig, n_tags: int, n_slots: int) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.randn(cfg.d_model) * 0.02)
        self.slot_pos = nn.Parameter(torch.randn(n_slots, cfg.d_model) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.ff_mult, cfg.dropout, cross=True)
                                    for _ in range(cfg.dec_layers))
        self.ln = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, n_tags + 1)  # K tags + [EOS]
        self.n_slots = n_slots

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        x = (self.mask_token + self.slot_pos)[None].expand(memory.shape[0], -1, -1).to(memory.dtype)
        for block in self.blocks:
            x = block(x, None, memory, memory_mask)
        return self.head(self.ln(x))


class UtsModel(nn.Module):
    """Encoder + the heads the objective needs. ``forward`` returns a dict of logits."""

    def __init__(self, cfg: TrainConfig, n_tags: int, n_slots: int) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.mtc_head = nn.Linear(cfg.d_model, n_tags) if "mtc" in cfg.objective else None
        self.par_decoder = ParDecoder(cfg, n_tags, n_slots) if "par" in cfg.objective else None

    def forward(self, feats: torch.Tensor, n_frames: torch.Tensor) -> dict[str, torch.Tensor]:
        frames, mask = self.encoder(feats, n_frames)
        out: dict[str, torch.Tensor] = {}
        if self.mtc_head is not None:
            out["mtc"] = self.mtc_head(masked_mean(frames, mask))
        if self.par_decoder is not None:
            out["par"] = self.par_decoder(frames, mask)
        return out


def mtc_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over clips and the K tags."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def par_loss(logits: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Mean over non-ignored slots of -log p(y_slot | audio); slots hold tag ids, K for [EOS], -100 ignored."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), slots.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def tag_scores(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, K) tag scores in [0, 1] for mAP: sigmoid of the MTC head, else max over PAR slots of p(tag)."""
    if "mtc" in out:
        return torch.sigmoid(out["mtc"].float())
    probs = torch.softmax(out["par"].float(), dim=-1)[..., :-1]
    return probs.max(dim=1).values


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
