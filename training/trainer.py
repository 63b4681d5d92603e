"""The training loop: single process (CPU or one GPU) or DDP under torchrun (NCCL on GPU, gloo on CPU).

Place in the flow: ``training.pretrain.main`` parses the CLI and calls ``run_training``. One step = read a
bucketed batch (workers) -> fbank + SpecAugment on the device -> encoder + heads (bf16 autocast on CUDA) ->
loss -> backward -> clip -> AdamW -> warm-up/cosine schedule. No host-device sync inside a step: losses, grad
norms and audio seconds are accumulated on the device and read only every ``log_every`` steps.
Resume: the same command with the same --out loads checkpoints/last.pt (model, optimiser, scheduler, epoch and
batch position, RNG states) and runs to ``steps``. metrics.jsonl stays append-only: steps a killed run logged
after its last checkpoint are logged again, and readers keep the last line per (step, kind).
Example: ``run_training(cfg, Path("exports/v800"), Path("runs/r1"), "cpu", argv)``
"""
from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from training import rundir
from training.config import TrainConfig, as_dict, config_from_dict
from training.data import (
    ClipBatches,
    EpochBatches,
    load_export,
    make_bucket_sampler,
    make_loader,
    make_ordered_sampler,
    split_cuts,
)
from training.errors import CheckpointError, UsageError
from training.features import Frontend, spec_augment
from training.metrics import mean_average_precision
from training.model import UtsModel, count_parameters, mtc_loss, par_loss, tag_scores


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine to min_lr_ratio at cfg.steps."""
    warmup = max(1, min(cfg.warmup_steps, cfg.steps // 5))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, cfg.steps - warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _dist_setup(device: str) -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "slot_pos" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def compute_losses(out: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
    losses: dict[str, torch.Tensor] = {}
    if "mtc" in out:
        losses["loss_mtc"] = mtc_loss(out["mtc"], batch["targets"])
    if "par" in out:
        losses["loss_par"] = par_loss(out["par"], batch["slots"])
    losses["loss"] = sum(losses.values())
    return losses


def _to_device(batch: dict, dev: torch.device) -> dict:
    moved = dict(batch)
    for key in ("audio", "audio_lens", "targets", "slots"):
        moved[key] = batch[key].to(dev, non_blocking=True)
    return moved


@torch.no_grad()
def validate(model: UtsModel, frontend: Frontend, loader, dev: torch.device, amp: bool) -> dict:
    model.eval()
    scores, targets, loss_sum, n = [], [], 0.0, 0
    for batch in loader:
        batch = _to_device(batch, dev)
        feats, n_frames = frontend(batch["audio"], batch["audio_lens"])
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
            out = model(feats, n_frames)
        losses = compute_losses(out, batch)
        loss_sum += float(losses["loss"]) * len(batch["clip_ids"])
        n += len(batch["clip_ids"])
        scores.append(tag_scores(out).cpu().numpy())
        targets.append(batch["targets"].cpu().numpy())
    model.train()
    if not n:
        return {"val_map": None, "val_loss": None, "ap": [], "positives": []}
    s, t = np.concatenate(scores), np.concatenate(targets)
    val_map, per_tag = mean_average_precision(s, t)
    return {"val_map": val_map, "val_loss": loss_sum / n, "ap": per_tag, "positives": t.sum(0).astype(int).tolist()}


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_same_config(saved: TrainConfig, cfg: TrainConfig, path: Path) -> None:
    a, b = as_dict(saved), as_dict(cfg)
    differ = [k for k in a if k not in ("steps", "num_workers") and a[k] != b[k]]
    if differ:
        raise UsageError(
            f"{path}: this run directory was started with a different config ({', '.join(f'{k}={a[k]!r} vs {b[k]!r}' for k in differ)}); "
            "rerun the same command to resume, or give a new --out")


def run_training(cfg: TrainConfig, export_dir: Path, out: Path, device: str, argv: list[str]) -> int:
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is visible to this process; use --device cpu")
    rank, world, local_rank = _dist_setup(device)
    dev = torch.device(f"cuda:{local_rank}" if device == "cuda" else "cpu")
    if dev.type == "cuda":  # TF32 for whatever runs outside the bf16 autocast (fbank stays float32 by design)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp = device == "cuda" and cfg.bf16
    out = Path(out).resolve()
    last_path = out / "checkpoints" / "last.pt"
    resume = None
    if last_path.exists():
        import pickle

        try:
            resume = torch.load(last_path, map_location="cpu", weights_only=False)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
            raise CheckpointError(last_path, f"an unreadable file ({exc})", "a checkpoint written by the trainer",
                                  "remove last.pt to resume from an older step_N.pt copied to last.pt") from None
        saved = config_from_dict(resume["config"])
        _check_same_config(saved, cfg, last_path)

    export = load_export(export_dir, max_clip_s=cfg.max_clip_s, par_max_slots=cfg.par_max_slots)
    if resume is not None and resume["labels"] != export.labels:
        raise UsageError(f"{last_path}: the run was trained on another label map than {export.dir}; use a new --out")
    n_slots = resume["n_slots"] if resume is not None else export.n_slots
    train_cuts, val_cuts = split_cuts(export, cfg.val_fraction, cfg.val_max_clips)
    if len(train_cuts) == 0:
        raise UsageError(f"{export.dir}: no training clips left after holding out val_fraction={cfg.val_fraction}")

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = UtsModel(cfg, export.n_tags, n_slots).to(dev)
    frontend = Frontend().to(dev)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98),
                            fused=dev.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "elapsed_s": 0.0}
    metrics_path = out / "metrics.jsonl"
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        state = dict(resume["state"])
        _set_rng_state(resume["rng"])
        if rank:
            torch.manual_seed(cfg.seed + 7919 * rank + state["step"])
        if rank == 0:
            print(f"resuming from {last_path} at step {state['step']} (epoch {state['epoch']}, "
                  f"batch {state['batch_in_epoch']})", flush=True)
    else:
        torch.manual_seed(cfg.seed + 7919 * rank + 1)  # SpecAugment draws differ per rank
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            rundir.write_json_atomic(out / "config.json", {
                "run_id": out.name, "created_at": rundir.now_iso(), "config": as_dict(cfg),
                "export": {**export.record, "dir": str(export.dir)}, "git_commit": rundir.git_commit(),
                "argv": list(argv), "world_size": world, "device": device, "n_parameters": count_parameters(model)})
    n_params = count_parameters(model)
    if state["step"] >= cfg.steps:
        if rank == 0:
            print(f"{out}: already at step {state['step']} >= steps={cfg.steps}; nothing to do", flush=True)
        _destroy(world)
        return 0

    train_model: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[local_rank] if dev.type == "cuda" else None)
    if cfg.compile and dev.type == "cuda":
        train_model = torch.compile(train_model)  # after DDP, so compiled graphs see DDP's bucketing hooks

    train_set = ClipBatches(export.clips, export.n_tags, n_slots, cfg.max_clip_s, cfg.seed, random_crop=True)
    val_set = ClipBatches(export.clips, export.n_tags, n_slots, cfg.max_clip_s, cfg.seed, random_crop=False)
    sampler = make_bucket_sampler(train_cuts, max_batch_s=cfg.max_batch_s, num_buckets=cfg.num_buckets,
                                  seed=cfg.seed, shuffle=True, world_size=world, rank=rank)
    pin = dev.type == "cuda"
    if rank == 0:
        print(f"run {out.name}: {cfg.objective} {cfg.size} ({n_params:,} parameters), {len(train_cuts)} train / "
              f"{len(val_cuts)} val clips, K={export.n_tags}, PAR slots={n_slots}, world_size={world}, {dev}",
              flush=True)

    def run_validation(step: int, elapsed: float) -> float | None:
        if rank != 0 or len(val_cuts) == 0:
            return None
        val_sampler = make_ordered_sampler(val_cuts, max_batch_s=cfg.max_batch_s)
        result = validate(model, frontend, make_loader(val_set, EpochBatches(val_sampler, 0, 0), cfg.num_workers, pin),
                          dev, amp)
        rundir.append_jsonl(metrics_path, {"kind": "val", "step": step, "time_s": round(elapsed, 3),
                                           "val_map": result["val_map"], "val_loss": result["val_loss"]})
        rundir.write_json_atomic(out / "per_tag_ap.json", {
            "step": step, "ap": dict(zip(export.labels, result["ap"])),
            "positives": dict(zip(export.labels, result["positives"]))})
        vm = result["val_map"]
        print(f"step {step}: val_map={vm if vm is None else round(vm, 4)} val_loss={result['val_loss']:.4f}",
              flush=True)
        return vm

    def checkpoint(step: int) -> None:
        if rank != 0:
            return
        rundir.save_checkpoint(out, step, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "state": dict(state), "rng": _rng_state(), "config": as_dict(cfg), "labels": export.labels,
            "n_slots": n_slots, "export_id": export.record.get("export_id"), "n_parameters": n_params,
        }, cfg.keep_checkpoints)

    start = time.perf_counter() - state["elapsed_s"]
    acc = {k: torch.zeros((), device=dev) for k in ("loss", "loss_mtc", "loss_par")}
    grad_norm = torch.zeros((), device=dev)
    audio_s = 0.0
    n_acc = 0
    last_log = time.perf_counter()
    final_val = None
    train_model.train()
    while state["step"] < cfg.steps:
        skip = state["batch_in_epoch"]
        loader = make_loader(train_set, EpochBatches(sampler, state["epoch"], skip), cfg.num_workers, pin)
        got = 0
        for batch in loader:
            got += 1
            batch = _to_device(batch, dev)
            feats, n_frames = frontend(batch["audio"], batch["audio_lens"])
            feats = spec_augment(feats, n_frames, time_masks=cfg.spec_time_masks, time_width=cfg.spec_time_width,
                                 freq_masks=cfg.spec_freq_masks, freq_width=cfg.spec_freq_width)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                out_logits = train_model(feats, n_frames)
            losses = compute_losses(out_logits, batch)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if cfg.grad_clip > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            for key, value in losses.items():
                acc[key] += value.detach()
            audio_s += batch["audio_s"]
            n_acc += 1
            state["step"] += 1
            state["batch_in_epoch"] += 1
            step = state["step"]
            state["elapsed_s"] = time.perf_counter() - start
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                totals = torch.stack([acc["loss"], acc["loss_mtc"], acc["loss_par"],
                                      torch.tensor(audio_s, device=dev)])
                if world > 1:
                    import torch.distributed as dist

                    dist.all_reduce(totals)
                    totals[:3] /= world
                vals = totals.tolist()  # the one host-device sync, every log_every steps
                if rank == 0:
                    record = {"kind": "train", "step": step, "time_s": round(now - start, 3),
                              "loss": vals[0] / n_acc}
                    if "loss_mtc" in losses:
                        record["loss_mtc"] = vals[1] / n_acc
                    if "loss_par" in losses:
                        record["loss_par"] = vals[2] / n_acc
                    record["lr"] = sched.get_last_lr()[0]
                    record["audio_s_per_s"] = round(vals[3] / max(now - last_log, 1e-9), 2)
                    if cfg.grad_clip > 0:
                        record["grad_norm"] = float(grad_norm)
                    rundir.append_jsonl(metrics_path, record)
                    print(f"step {step}/{cfg.steps} loss={record['loss']:.4f} lr={record['lr']:.2e} "
                          f"audio_s/s={record['audio_s_per_s']}", flush=True)
                for value in acc.values():
                    value.zero_()
                audio_s, n_acc, last_log = 0.0, 0, time.perf_counter()
            if step % cfg.val_every == 0 or step == cfg.steps:
                final_val = run_validation(step, time.perf_counter() - start)
                _barrier(world)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                checkpoint(step)
                _barrier(world)
            if step >= cfg.steps:
                break
        else:
            if got == 0 and skip == 0:
                raise UsageError(f"{export.dir}: the training set gives no batch for world_size={world} "
                                 f"(max_batch_s={cfg.max_batch_s}); add clips or use fewer processes")
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    if rank == 0:
        seconds = time.perf_counter() - start
        rundir.write_json_atomic(out / "finished.json", {"step": state["step"], "seconds": round(seconds, 3),
                                                         "final_val_map": final_val})
        print(f"finished at step {state['step']} in {seconds:.1f} s; final val_map={final_val}", flush=True)
    _destroy(world)
    return 0


def _destroy(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()

