"""Multitask training: every step sums the losses of all tasks; resumable; exports plain weights.

Run: ``python -m symbolic train model=small trainer.steps=3000`` (hydra overrides).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from plumbing.device import resolve_device, training_autocast
from plumbing.errors import UserError
from plumbing.signals import Interrupted, StopRequest, stop_on_signals
from symbolic.checkpoint import STATE_NAME, export, load_state, read_export, save_state
from symbolic.config import ModelConfig, TrainConfig, to_dataclass, to_dict
from symbolic.data import IGNORE, Piece, TaskBatcher, load_pieces
from symbolic.model import MusicTransformer, count_params, trim_memory
from symbolic.stream import batch_stream, task_batch
from symbolic.tokens import K_POS, TokenTable, build_tokenizer, token_table

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "symbolic"


def compose_config(overrides: list[str]) -> TrainConfig:
    """Composes configs/symbolic with hydra overrides and validates it against ``TrainConfig``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        raw = compose(config_name="config", overrides=overrides)
    return to_dataclass(TrainConfig, OmegaConf.to_container(raw, resolve=True))


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
    h, _ = model.decode(b["ids"], b["pos"], b["bar"], enc=enc, enc_pad=b["src_pad"],
                        align=b["align"])
    return ce(model.logits(h), b["target"])


def task_loss(model: MusicTransformer, task: str, b: dict[str, Tensor]) -> Tensor:
    if task == "lm":
        return lm_loss(model, b)
    return mlm_loss(model, b) if task == "mlm" else seq2seq_loss(model, b)


def train_step(model: MusicTransformer, opt: torch.optim.Optimizer, batches: dict[str, dict],
               grad_clip: float, precision: str = "fp32") -> dict[str, float]:
    """One optimiser step on the summed task losses; returns ``{"loss/<task>": value}``.

    ``precision`` (:func:`plumbing.device.training_autocast`): the forward pass under bf16
    autocast or not; the weights, gradients and optimiser state stay float32.
    """
    model.train()
    opt.zero_grad(set_to_none=True)
    dev = next(model.parameters()).device
    with training_autocast(dev, precision):
        losses = {task: task_loss(model, task, b) for task, b in batches.items()}
    torch.stack(list(losses.values())).sum().backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return {f"loss/{t}": float(v.detach()) for t, v in losses.items()}


@torch.no_grad()
def evaluate_tasks(model: MusicTransformer, batcher: TaskBatcher, tasks: list[str], n: int,
                   size: int, device: torch.device | None = None,
                   precision: str = "fp32") -> dict[str, float]:
    """Mean validation loss per task over ``n`` batches (forward under
    :func:`plumbing.device.training_autocast`)."""
    model.eval()
    out = {}
    seg = model.cfg.seg_len
    dev = next(model.parameters()).device
    for task in tasks:
        with training_autocast(dev, precision):
            vals = [float(task_loss(model, task, task_batch(batcher, task, size, seg, device)))
                    for _ in range(n)]
        out[f"val/{task}"] = sum(vals) / len(vals)
    return out


def build_model(cfg: ModelConfig) -> MusicTransformer:
    """Fills the tokenizer-dependent sizes of ``cfg`` and builds the model."""
    table = token_table(build_tokenizer())
    cfg.vocab_size, cfg.n_pos = table.size, len(table.ids(K_POS))
    return MusicTransformer(cfg)


def lr_at(step: int, cfg: TrainConfig, minutes: float = 0.0) -> float:
    """Linear warm-up then cosine decay to 10 % of the peak.

    The decay runs over ``trainer.steps``; with ``trainer.time_schedule`` over
    ``trainer.max_minutes`` of this leg instead (``minutes`` spent so far), for a run sized by
    time on hardware whose speed is not known in advance.
    """
    t = cfg.trainer
    if step < t.warmup:
        return t.lr * (step + 1) / t.warmup
    if t.time_schedule:
        if t.max_minutes <= 0:
            raise UserError("trainer.time_schedule needs trainer.max_minutes > 0")
        frac = min(1.0, minutes / t.max_minutes)
    else:
        frac = min(1.0, (step - t.warmup) / max(1, t.steps - t.warmup))
    return t.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


@dataclass
class Session:
    """The pieces of one training run, built by :func:`setup`; ``step`` counts optimiser steps."""

    cfg: TrainConfig
    model: MusicTransformer
    opt: torch.optim.Optimizer
    table: TokenTable
    train_b: TaskBatcher
    val_pieces: list[Piece]
    device: torch.device
    step: int = 0
    start: float = 0.0

    @property
    def state_path(self) -> Path:
        """The resumable state of the run: ``trainer.run_dir/last.pt``."""
        return Path(self.cfg.trainer.run_dir) / STATE_NAME


def setup(cfg: TrainConfig) -> Session:
    """Seeds, device, model, data and optimiser of a run (nothing loaded from the run folder)."""
    t = cfg.trainer
    torch.manual_seed(t.seed)
    torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    model = build_model(cfg.model).to(device)
    tokenizer = build_tokenizer()
    table = token_table(tokenizer)
    splits = load_pieces(cfg.data, tokenizer)
    train_b = TaskBatcher(splits["train"], table, cfg.data, cfg.model.seg_len, cfg.model.n_pos,
                          augment=True, seed=t.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    print(f"model {cfg.model.name}: {count_params(model) / 1e6:.2f} M params, "
          f"{len(splits['train'])} train / {len(splits['val'])} val pieces on {device}")
    return Session(cfg, model, opt, table, train_b, splits["val"] or splits["train"], device)


def resume(s: Session) -> bool:
    """Load the run's last state if there is one; it must come from the same model config.

    Raises:
        UserError: the state is not a symbolic training state, or of another model.
    """
    if not s.state_path.exists():
        return False
    state = load_state(s.state_path)
    # Through the dataclass: a state saved before a model field existed gets its default.
    saved = to_dict(to_dataclass(ModelConfig, state["config"]["model"]))
    if saved != to_dict(s.cfg.model):
        raise UserError(f"{s.state_path} was trained with another model config; "
                        "use a new trainer.run_dir")
    s.model.load_state_dict(state["model"])
    s.opt.load_state_dict(state["optim"])
    s.step = int(state["step"])
    s.train_b.rng = np.random.default_rng(s.cfg.trainer.seed + s.step)  # fresh draws after resume
    print(f"resumed from {s.state_path} at step {s.step}", flush=True)
    return True


def init_weights(model: MusicTransformer, path: str) -> None:
    """Starts ``model`` from the weights of a training state or export (fine-tuning).

    Raises:
        UserError: no such file, or weights of another model (beyond ``align_proj``). Only
            parameters are compared: a config change without parameters of its own (e.g.
            ``bar_attention``) loads silently, as a fine-tuning recipe may want.
    """
    try:
        weights = load_state(path)["model"]
    except UserError:
        try:
            weights = read_export(path)["model"]
        except UserError as err:
            raise UserError(f"trainer.init_from: {err} (nor a training state)") from None
    try:
        missing, unexpected = model.load_state_dict(
            {k: v.float() for k, v in weights.items()}, strict=False)
    except RuntimeError:  # a tensor of another shape
        raise UserError(f"trainer.init_from={path}: weights of another model size") from None
    missing = [k for k in missing if not k.startswith("align_proj.")]
    if missing or unexpected:
        raise UserError(f"trainer.init_from={path}: weights of another model "
                        f"({len(missing)} missing, {len(unexpected)} unexpected)")
    print(f"weights from {path}", flush=True)


def checkpoint(s: Session) -> None:
    """Validate on fixed batches, append the losses to ``log.txt``, save the state atomically."""
    t, m = s.cfg.trainer, s.cfg.model
    # Unweighted: validation losses stay comparable across runs with other pool weights.
    val_data = replace(s.cfg.data, seq2seq_weights={})
    val_b = TaskBatcher(s.val_pieces, s.table, val_data, m.seg_len, m.n_pos, augment=False,
                        seed=1234)
    val = evaluate_tasks(s.model, val_b, t.tasks, t.eval_batches, t.batch_size, s.device,
                         t.precision)
    msg = f"step {s.step} " + " ".join(f"{k}={v:.3f}" for k, v in val.items())
    print(msg, flush=True)
    s.state_path.parent.mkdir(parents=True, exist_ok=True)
    with open(s.state_path.parent / "log.txt", "a") as f:
        f.write(msg + "\n")
    save_state(s.state_path, s.cfg, s.step, s.model, s.opt)


def fit(s: Session, stop: StopRequest) -> None:
    """Train until ``trainer.steps`` (or ``max_minutes``), checkpointing on schedule.

    Raises:
        Interrupted: ``stop`` saw SIGINT/SIGTERM; the step under way finished and was saved.
    """
    t = s.cfg.trainer
    stream = batch_stream(s.train_b, t.tasks, t.batch_size, s.cfg.model.seg_len, s.device,
                          t.workers, t.seed, s.step)
    while s.step < t.steps:
        for g in s.opt.param_groups:
            g["lr"] = lr_at(s.step, s.cfg, (time.time() - s.start) / 60)
        metrics = train_step(s.model, s.opt, next(stream), t.grad_clip, t.precision)
        s.step += 1
        out_of_time = t.max_minutes > 0 and time.time() - s.start > 60 * t.max_minutes
        if s.step % t.log_every == 0 or s.step == t.steps:
            line = f"step {s.step} " + " ".join(f"{k}={v:.3f}" for k, v in metrics.items())
            print(line + f" {time.time() - s.start:.0f}s", flush=True)
        scheduled = s.step % t.ckpt_every == 0 or s.step == t.steps or out_of_time
        if scheduled:
            checkpoint(s)
        if stop.signum is not None:
            if not scheduled:  # no validation: the grace period of a preemption is short
                save_state(s.state_path, s.cfg, s.step, s.model, s.opt)
            raise Interrupted.saved(stop.signum, s.step, s.state_path)
        if out_of_time:
            break


def train(cfg: TrainConfig) -> Path:
    """Trains (resuming from ``run_dir/last.pt`` when present); returns the export path.

    Raises:
        UserError: bad data, device or run folder.
        Interrupted: SIGINT/SIGTERM stopped the run after saving it; the same call resumes.
    """
    s = setup(cfg)
    s.start = time.time()
    with stop_on_signals() as stop:
        if not resume(s) and cfg.trainer.init_from:
            init_weights(s.model, cfg.trainer.init_from)
        fit(s, stop)
    t = cfg.trainer
    path = Path(t.export) if t.export else s.state_path.parent / "export.pt"
    meta = {"steps": s.step, "train_minutes": round((time.time() - s.start) / 60, 1),
            "data": cfg.data.source, "window_bars": cfg.data.window_bars,
            "max_src_len": cfg.data.max_src_len, "max_tgt_len": cfg.data.max_tgt_len,
            **({"init_from": t.init_from} if t.init_from else {})}
    export(s.model, path, meta)
    print(f"exported {path}")
    return path
