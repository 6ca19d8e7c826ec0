"""Multitask training: every step sums the losses of all tasks; resumable; exports plain weights.

Run: ``python -m symbolic train model=small trainer.steps=3000`` (hydra overrides).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from symbolic.config import ModelConfig, TrainConfig, from_dict, to_dict
from symbolic.data import IGNORE, TaskBatcher, load_pieces
from symbolic.model import MusicTransformer, count_params, trim_memory
from symbolic.tokens import K_POS, build_tokenizer, token_table

EXPORT_FORMAT = "symbolic-export-1"
STATE_FORMAT = "symbolic-train-1"
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "symbolic"


def compose_config(overrides: list[str]) -> TrainConfig:
    """Composes configs/symbolic with hydra overrides and validates it against ``TrainConfig``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        raw = compose(config_name="config", overrides=overrides)
    return from_dict(TrainConfig, OmegaConf.to_container(raw, resolve=True))


def ce(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy over non-ignored targets: logits (B, T, V), target (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE)


def lm_loss(model: MusicTransformer, b: dict[str, Tensor]) -> Tensor:
    """Continuation loss over segments of ``seg_len``, carrying memory between them."""
    S, mem, losses = model.cfg.seg_len, None, []
    for s in range(0, b["ids"].shape[1], S):
        sl = slice(s, s + S)
        h, mem = model.decode(b["ids"][:, sl], b["pos"][:, sl], b["bar"][:, sl], mem)
        mem = trim_memory(mem, model.cfg.mem_len)
        losses.append(ce(model.logits(h), b["target"][:, sl]))
    return torch.stack(losses).mean()


def mlm_loss(model: MusicTransformer, b: dict[str, Tensor]) -> Tensor:
    """Masked-token loss of the bidirectional encoder."""
    h = model.encode(b["ids"], b["pos"], b["bar"], b["pad"])
    return ce(model.logits(h), b["target"])


def seq2seq_loss(model: MusicTransformer, b: dict[str, Tensor]) -> Tensor:
    """Encoder-decoder loss (melody->harmony or harmony->melody)."""
    enc = model.encode(b["src"], b["src_pos"], b["src_bar"], b["src_pad"])
    h, _ = model.decode(b["ids"], b["pos"], b["bar"], enc=enc, enc_pad=b["src_pad"])
    return ce(model.logits(h), b["target"])


def task_batch(batcher: TaskBatcher, task: str, size: int, seg_len: int) -> dict[str, Tensor]:
    """One batch of ``task`` (``lm``, ``mlm``, ``mel2harm``, ``harm2mel``)."""
    if task == "lm":
        return batcher.lm(size, 2 * seg_len)
    if task == "mlm":
        return batcher.mlm(size)
    if task in ("mel2harm", "harm2mel"):
        return batcher.seq2seq(size, to_harmony=task == "mel2harm")
    raise ValueError(f"unknown task {task!r}")


def task_loss(model: MusicTransformer, task: str, b: dict[str, Tensor]) -> Tensor:
    if task == "lm":
        return lm_loss(model, b)
    return mlm_loss(model, b) if task == "mlm" else seq2seq_loss(model, b)


def train_step(model: MusicTransformer, opt: torch.optim.Optimizer, batches: dict[str, dict],
               grad_clip: float) -> dict[str, float]:
    """One optimiser step on the summed task losses; returns ``{"loss/<task>": value}``."""
    model.train()
    opt.zero_grad(set_to_none=True)
    losses = {task: task_loss(model, task, b) for task, b in batches.items()}
    torch.stack(list(losses.values())).sum().backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return {f"loss/{t}": float(v.detach()) for t, v in losses.items()}


@torch.no_grad()
def evaluate_tasks(model: MusicTransformer, batcher: TaskBatcher, tasks: list[str], n: int,
                   size: int) -> dict[str, float]:
    """Mean validation loss per task over ``n`` batches."""
    model.eval()
    out = {}
    for task in tasks:
        vals = [float(task_loss(model, task, task_batch(batcher, task, size, model.cfg.seg_len)))
                for _ in range(n)]
        out[f"val/{task}"] = sum(vals) / len(vals)
    return out


def build_model(cfg: ModelConfig) -> MusicTransformer:
    """Fills the tokenizer-dependent sizes of ``cfg`` and builds the model."""
    table = token_table(build_tokenizer())
    cfg.vocab_size, cfg.n_pos = table.size, len(table.ids(K_POS))
    return MusicTransformer(cfg)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 10 % of the peak."""
    t = cfg.trainer
    if step < t.warmup:
        return t.lr * (step + 1) / t.warmup
    frac = min(1.0, (step - t.warmup) / max(1, t.steps - t.warmup))
    return t.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temp name, then rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export(model: MusicTransformer, path: Path, meta: dict[str, Any]) -> None:
    """Writes the inference export: config + fp16 weights + metadata, plain types only."""
    sd = {k: v.detach().to(torch.float16).clone() for k, v in model.state_dict().items()}
    save_atomic({"format": EXPORT_FORMAT, "config": to_dict(model.cfg), "model": sd,
                 "meta": meta}, path)


def load_export(path: str | Path) -> MusicTransformer:
    """Loads an export (``weights_only=True``) into a float32 model in eval mode."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path} is not a symbolic export")
    model = MusicTransformer(from_dict(ModelConfig, blob["config"]))
    model.load_state_dict({k: v.float() for k, v in blob["model"].items()}, strict=True)
    return model.eval()


def train(cfg: TrainConfig) -> Path:
    """Trains (resuming from ``run_dir/last.pt`` when present); returns the export path."""
    t = cfg.trainer
    torch.manual_seed(t.seed)
    torch.set_num_threads(t.threads)
    model = build_model(cfg.model)
    table = token_table(build_tokenizer())
    splits = load_pieces(cfg.data, build_tokenizer())
    val_pieces = splits["val"] or splits["train"]
    train_b = TaskBatcher(splits["train"], table, cfg.data, cfg.model.seg_len, cfg.model.n_pos,
                          augment=True, seed=t.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    run = Path(t.run_dir)
    step = 0
    if (run / "last.pt").exists():
        state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        step = state["step"]
        train_b.rng = np.random.default_rng(t.seed + step)  # fresh draws after a resume
        print(f"resumed from {run / 'last.pt'} at step {step}")
    print(f"model {cfg.model.name}: {count_params(model) / 1e6:.2f} M params, "
          f"{len(splits['train'])} train / {len(splits['val'])} val pieces")
    start, log = time.time(), run / "log.txt"
    while step < t.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        batches = {k: task_batch(train_b, k, t.batch_size, cfg.model.seg_len) for k in t.tasks}
        metrics = train_step(model, opt, batches, t.grad_clip)
        step += 1
        out_of_time = t.max_minutes > 0 and time.time() - start > 60 * t.max_minutes
        if step % t.log_every == 0 or step == t.steps:
            line = f"step {step} " + " ".join(f"{k}={v:.3f}" for k, v in metrics.items())
            print(line + f" {time.time() - start:.0f}s", flush=True)
        if step % t.ckpt_every == 0 or step == t.steps or out_of_time:
            val_b = TaskBatcher(val_pieces, table, cfg.data, cfg.model.seg_len, cfg.model.n_pos,
                                augment=False, seed=1234)
            val = evaluate_tasks(model, val_b, t.tasks, t.eval_batches, t.batch_size)
            msg = f"step {step} " + " ".join(f"{k}={v:.3f}" for k, v in val.items())
            print(msg, flush=True)
            run.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as f:
                f.write(msg + "\n")
            save_atomic({"format": STATE_FORMAT, "config": to_dict(cfg), "step": step,
                         "model": model.state_dict(), "optim": opt.state_dict()}, run / "last.pt")
        if out_of_time:
            break
    path = Path(t.export) if t.export else run / "export.pt"
    meta = {"steps": step, "train_minutes": round((time.time() - start) / 60, 1),
            "data": cfg.data.source, "window_bars": cfg.data.window_bars,
            "max_src_len": cfg.data.max_src_len, "max_tgt_len": cfg.data.max_tgt_len}
    export(model, path, meta)
    print(f"exported {path}")
    return path
