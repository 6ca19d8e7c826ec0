"""One training run: model, adversary, optimisers, data, checkpoints, validation and logging."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from plumbing.atomic import remove_stale_temps
from plumbing.device import resolve_device, training_autocast
from plumbing.signals import Interrupted, StopRequest, stop_on_signals
from umt.checkpoint import EXPORT_FORMAT, TRAIN_FORMAT, atomic_save, load_file, unwrap
from umt.config import ModelConfig, TrainConfig, to_dataclass, to_dict
from umt.data import SegmentSampler, build_cache, open_cache
from umt.errors import UmtError
from umt.model import UniversalTranslator
from umt.nn.classifier import DomainClassifier
from umt.nn.condition import has_note_head
from umt.objective import Batch, GeneratorLoss, paired_samplers

log = logging.getLogger(__name__)


def generator_objective(recon: torch.Tensor, adv_ce: torch.Tensor, lam: float,
                        notes: torch.Tensor | None = None, beta: float = 0.0) -> torch.Tensor:
    """Reconstruction minus lambda times the classifier's cross-entropy (the encoder is rewarded
    for latents the classifier cannot place), plus beta times the note head's loss."""
    loss = recon.mean() - lam * adv_ce
    return loss if notes is None else loss + beta * notes


@dataclass(frozen=True)
class Slot:
    """One piece of the training state: how to read it and how to restore it.

    Attributes:
        get: Returns the piece as plain types and tensors.
        set: Restores it from what ``get`` returned.
        per_rank: The rank's own random stream: rank 0's is saved and restored; other ranks
            draw a fresh stream on resume (they never saved theirs).
    """

    get: Callable[[], Any]
    set: Callable[[Any], None]
    per_rank: bool = False
    optional: bool = False  # absent from checkpoints written before it existed


def _slot(obj: Any) -> Slot:
    """The slot of an object with ``state_dict`` / ``load_state_dict``."""
    return Slot(obj.state_dict, obj.load_state_dict)


class Trainer:
    """Owns every piece of a run; :meth:`fit` trains until ``max_steps``, resuming if it can.

    Args:
        cfg: The validated run configuration.
        run_dir: Folder for checkpoints and logs (the same folder resumes).
        rank: Process rank under torchrun (0 alone).
        world: Number of processes.
    """

    def __init__(self, cfg: TrainConfig, run_dir: Path, rank: int = 0, world: int = 1) -> None:
        self.cfg, self.run_dir, self.rank, self.world = cfg, Path(run_dir), rank, world
        self.device = resolve_device(cfg.trainer.device, rank)
        t = cfg.trainer
        if t.threads:
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed + rank)
        base = load_file(t.finetune_from, EXPORT_FORMAT) if t.finetune_from else None
        if base is not None:
            cfg.model = to_dataclass(ModelConfig, base["config"])
        self._setup_data(min_domains=1 if base is not None else 2)
        self._setup_model(base)
        self.step = 0
        self.train_seconds = 0.0  # summed over every leg of the run: trainer.max_minutes
        self._saved_step = -1  # the step of the checkpoint on disk, if this process wrote it

    def _setup_data(self, min_domains: int) -> None:
        d = self.cfg.data
        if self.rank == 0:
            cache = build_cache(d.root, d.cache_dir, d.domains or None, d.segment, min_domains)
        if self.world > 1:
            dist.barrier()  # others wait for rank 0's cache instead of racing to build it
        if self.rank != 0:  # finds rank 0's fresh cache, so only hashes the sources
            cache = build_cache(d.root, d.cache_dir, d.domains or None, d.segment, min_domains)
        train, val = open_cache(cache, "train"), open_cache(cache, "val")
        self.domains = list(train)
        seed = self.cfg.trainer.seed
        if has_note_head(self.cfg.model) or d.paired > 0:
            self.sampler, val_sampler = paired_samplers(d, cache, self.domains,
                                                        seed + 1000 * self.rank, seed)
        else:
            self.sampler = SegmentSampler(
                train, self.domains, d.segment, d.batch_per_domain, seed + 1000 * self.rank,
                d.silence_db, d.augment, d.shift_semitones,
            )
            val_sampler = SegmentSampler(
                val, self.domains, d.segment, d.val_segments, seed, d.silence_db, augment=False
            )
        self.val_batch = Batch.of(val_sampler.next_batch())

    def _setup_model(self, base: dict | None) -> None:
        t, names = self.cfg.trainer, self.domains
        known = list(base["domains"]) if base else []
        model = UniversalTranslator(self.cfg.model, known + [n for n in names if n not in known])
        if base is not None:
            model.encoder.load_state_dict(base["encoder"])
            if model.note_head is not None and base.get("note_head"):
                model.note_head.load_state_dict(base["note_head"])
            for name in known:
                model.decoders[name].load_state_dict(base["decoders"][name])
        for name, dec in model.decoders.items():
            dec.requires_grad_(name in names)
            dec.activation_checkpointing = t.activation_checkpointing
        self.frozen = t.freeze_encoder
        model.encoder.requires_grad_(not self.frozen)
        self.model = model.to(self.device)
        self.classifier = DomainClassifier(
            self.cfg.model.classifier, self.cfg.model.encoder.latent_dim, len(names)
        ).to(self.device)
        self.gen = GeneratorLoss(self.model, names)
        self.clf = self.classifier
        if self.world > 1:
            self.gen = DDP(self.gen, find_unused_parameters=base is not None)
            self.clf = DDP(self.classifier)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(params, lr=t.lr)
        self.opt_d = torch.optim.Adam(self.classifier.parameters(), lr=t.d_lr)
        gamma = t.lr_decay ** (1 / t.decay_every)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.opt_g, gamma)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, gamma)

    def _autocast(self):
        return training_autocast(self.device, self.cfg.trainer.precision)

    def train_step(self, batch: object) -> dict:
        """One adversary step then one generator step.

        Args:
            batch: A :class:`~umt.objective.Batch`, or what a sampler gives: (x, x_aug, labels)
                from :class:`SegmentSampler`, a :class:`~umt.pairs.PairedBatch`.

        Returns:
            Flat metrics: ``recon/<domain>``, ``loss/recon``, ``adv/d_loss``, ``adv/d_acc``,
            ``adv/g_ce``, ``loss/g``, ``lr``, and ``notes/bce`` with a note head and labels.
        """
        batch = Batch.of(batch).to(self.device)
        labels = batch.source_domain  # the adversary guesses the instrument the encoder heard
        self.model.train()
        self.classifier.train()
        with self._autocast():
            recon, z, notes = self.gen(batch)
        metrics = {f"recon/{n}": v for n, v in zip(self.domains, recon.tolist(), strict=True)}
        if notes is not None:
            metrics["notes/bce"] = notes.item()
        lam = 0.0 if self.frozen else self.cfg.trainer.adv_lambda
        if lam > 0:
            metrics.update(self.classifier_step(z, labels))
            self.classifier.requires_grad_(False)  # the generator step must not move the adversary
            with self._autocast():
                adv_ce = F.cross_entropy(self.classifier(z).float(), labels)
            self.classifier.requires_grad_(True)
        else:
            adv_ce = torch.zeros((), device=self.device)
        loss = generator_objective(recon, adv_ce, lam, notes, self.cfg.model.notes.weight)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.opt_g.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.trainer.grad_clip)
        self.opt_g.step()
        self.sched_g.step()
        self.step += 1
        metrics.update({"loss/recon": recon.mean().item(), "adv/g_ce": adv_ce.item(),
                        "loss/g": loss.item(), "grad/g_norm": grad_norm.item(),
                        "lr": self.sched_g.get_last_lr()[0]})
        return metrics

    def classifier_step(self, z: torch.Tensor, labels: torch.Tensor) -> dict:
        """Train the adversary on the detached latent; the encoder gets no gradient from it.

        Args:
            z: (N, D, F) latents; labels: (N,) domain indices.
        """
        with self._autocast():
            logits = self.clf(z.detach()).float()
        loss = F.cross_entropy(logits, labels)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.classifier.parameters(), self.cfg.trainer.grad_clip)
        self.opt_d.step()
        self.sched_d.step()
        acc = (logits.argmax(-1) == labels).float().mean()
        return {"adv/d_loss": loss.item(), "adv/d_acc": acc.item()}

    @torch.no_grad()
    def validate(self) -> dict:
        """Per-domain reconstruction loss and classifier accuracy on fixed validation segments."""
        self.model.eval()
        self.classifier.eval()
        batch = self.val_batch.to(self.device)
        with self._autocast():
            recon, z, notes = unwrap(self.gen)(batch)
            acc = (self.classifier(z).argmax(-1) == batch.source_domain).float().mean().item()
        out = {f"val/recon/{n}": v for n, v in zip(self.domains, recon.tolist(), strict=True)}
        out["val/d_acc"] = acc
        if notes is not None:
            out["val/notes/bce"] = notes.item()
        return out

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def state_table(self) -> dict[str, Slot]:
        """Every saved piece of the run, named once: :meth:`state_dict` and :meth:`resume`
        both walk this table, so a new piece of state is added in one place."""
        decoders = self.model.decoders
        heads = {} if self.model.note_head is None else {"note_head": _slot(self.model.note_head)}
        return heads | {
            "encoder": _slot(self.model.encoder),
            "decoders": Slot(lambda: {n: d.state_dict() for n, d in decoders.items()},
                             self._load_decoders),
            "classifier": _slot(self.classifier),
            "opt_g": _slot(self.opt_g),
            "opt_d": _slot(self.opt_d),
            "sched_g": _slot(self.sched_g),
            "sched_d": _slot(self.sched_d),
            "step": Slot(lambda: self.step, self._set_step),
            "train_seconds": Slot(lambda: self.train_seconds, self._set_train_seconds,
                                  optional=True),
            "sampler": Slot(self.sampler.state_dict, self.sampler.load_state_dict, per_rank=True),
            "torch_rng": Slot(torch.get_rng_state, torch.set_rng_state, per_rank=True),
        }

    def _load_decoders(self, state: dict[str, dict]) -> None:
        for name, sd in state.items():
            self.model.decoders[name].load_state_dict(sd)

    def _set_step(self, step: int) -> None:
        self.step = int(step)

    def _set_train_seconds(self, seconds: float) -> None:
        self.train_seconds = float(seconds)

    def done(self) -> bool:
        """Whether the run has reached ``max_steps`` or spent its ``max_minutes``."""
        t = self.cfg.trainer
        over_time = t.max_minutes > 0 and self.train_seconds >= 60 * t.max_minutes
        return self.step >= t.max_steps or over_time

    def state_dict(self) -> dict:
        """Everything needed to resume, as plain types and tensors: a header that
        :meth:`resume` checks (format, config, domains) plus every :meth:`state_table` slot."""
        header = {"format": TRAIN_FORMAT, "config": to_dict(self.cfg),
                  "domains": unwrap(self.model).domains, "trained_domains": self.domains}
        return header | {key: slot.get() for key, slot in self.state_table().items()}

    def save(self) -> None:
        """Write the checkpoint atomically (rank 0 only)."""
        if self.rank == 0:
            atomic_save(self.state_dict(), self.checkpoint_path)
        self._saved_step = self.step

    def resume(self) -> bool:
        """Load the last checkpoint of this run folder if there is one.

        Raises:
            UmtError: the checkpoint is of another model or other domains, or not one at all.
        """
        if not self.checkpoint_path.exists():
            return False
        state = load_file(self.checkpoint_path, TRAIN_FORMAT)
        # Through the dataclass: a checkpoint from before a config field existed has its default.
        saved = to_dict(to_dataclass(ModelConfig, state["config"]["model"]))
        if saved != to_dict(self.cfg.model) or state["domains"] != unwrap(
            self.model
        ).domains:
            raise UmtError(
                f"{self.checkpoint_path} was trained with another model or other domains; "
                "use a new run folder (hydra.run.dir=...)"
            )
        for key, slot in self.state_table().items():
            if slot.optional and key not in state:
                continue
            if self.rank == 0 or not slot.per_rank:
                slot.set(state[key])
        if self.rank != 0:  # other ranks: a fresh stream that differs from every earlier one
            self.sampler.rng = np.random.default_rng([self.cfg.trainer.seed, self.rank, self.step])
        self._follow_lr_settings()
        self._saved_step = self.step
        return True

    def _follow_lr_settings(self) -> None:
        """Apply this leg's ``trainer.lr`` / ``d_lr`` / ``lr_decay`` to the resumed schedules.

        The loaded optimiser and scheduler states hold the rates of the run's first leg, which
        would otherwise win silently over a new command line (a fine-tuning leg at a lower rate).
        The decay already applied is kept: the rate is the new base times the decay so far.
        """
        t = self.cfg.trainer
        gamma = t.lr_decay ** (1 / t.decay_every)
        schedules = ((self.opt_g, self.sched_g, t.lr), (self.opt_d, self.sched_d, t.d_lr))
        for opt, sched, lr in schedules:
            old = sched.base_lrs[0]
            if math.isclose(old, lr) and math.isclose(sched.gamma, gamma):
                continue
            if self.rank == 0:
                log.info("learning rate base %g -> %g, decay per step %g -> %g (this leg's "
                         "settings)", old, lr, sched.gamma, gamma)
            sched.base_lrs = [lr] * len(opt.param_groups)
            sched.gamma = gamma
            for g in opt.param_groups:
                g["initial_lr"] = lr
                g["lr"] = lr * gamma ** sched.last_epoch
            sched._last_lr = [g["lr"] for g in opt.param_groups]

    def fit(self) -> dict:
        """Train until ``trainer.max_steps`` or ``trainer.max_minutes`` of training time, resuming
        from the run folder, checkpointing and validating on schedule.

        On SIGINT or SIGTERM the step under way finishes, rank 0 saves a checkpoint (all ranks
        stop at the same step) and :class:`~plumbing.signals.Interrupted` is raised.

        Returns:
            The metrics of the last step (empty if nothing was left to train).

        Raises:
            Interrupted: a signal stopped the run after its checkpoint was saved.
        """
        with stop_on_signals() as stop:
            if self.rank == 0:
                remove_stale_temps(self.checkpoint_path)  # left by a run killed while saving
            if self.resume() and self.rank == 0:
                log.info("resumed from %s at step %d", self.checkpoint_path, self.step)
            run_log = RunLog(self)
            metrics: dict = {}
            try:
                while not self.done():
                    metrics = self._fit_step(run_log)
                    self._stop_if_signalled(stop)
            finally:
                run_log.close()
        return metrics

    def _fit_step(self, run_log: RunLog) -> dict:
        """One training step with its scheduled logging, validation and checkpoint."""
        t = self.cfg.trainer
        start = time.perf_counter()
        metrics = self.train_step(self.sampler.next_batch())
        self.train_seconds += self._agreed(time.perf_counter() - start)
        step, last = self.step, self.done()
        run_log.step(metrics, write=step % t.log_every == 0 or last)
        if step % t.val_every == 0 or last:
            val = self.validate()
            run_log.scalars(val, step)
            if self.rank == 0:
                log.info("step %d %s", step, " ".join(f"{k}={v:.4f}" for k, v in val.items()))
        if step % t.checkpoint_every == 0 or last:
            self.save()
        return metrics

    def _agreed(self, seconds: float) -> float:
        """The slowest rank's time, so that every rank stops at the same step."""
        if self.world == 1:
            return seconds
        t = torch.tensor([seconds], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def _stop_if_signalled(self, stop: StopRequest) -> None:
        """Save and raise Interrupted if any rank got SIGINT/SIGTERM (all ranks agree, so
        none waits forever in the next step's all-reduce)."""
        signum = stop.signum or 0
        if self.world > 1:
            flag = torch.tensor([signum], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            signum = int(flag.item())
        if not signum:
            return
        if self._saved_step != self.step:
            self.save()
        if self.world > 1:
            dist.barrier()  # torchrun kills every rank once one exits: let rank 0 finish saving
        raise Interrupted.saved(signum, self.step, self.checkpoint_path)


class RunLog:
    """Rank 0's tqdm bar and TensorBoard writer for :meth:`Trainer.fit` (silent elsewhere)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer, t = trainer, trainer.cfg.trainer
        self.writer = None
        if trainer.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(trainer.run_dir / "tb"))
        self.bar = tqdm(total=t.max_steps, initial=trainer.step, dynamic_ncols=True, desc="train",
                        disable=trainer.rank != 0 or not t.progress)
        self.start, self.first = time.time(), trainer.step

    def step(self, metrics: dict, write: bool) -> None:
        """Advance the bar; when ``write``, add the speed to ``metrics`` and write them."""
        self.bar.update(1)
        if not write:
            return
        tr = self.trainer
        segments = tr.sampler.batch_per_domain * len(tr.domains) * tr.world
        audio_s = (tr.step - self.first) * tr.sampler.segment * segments / 16_000
        metrics["speed/audio_s_per_s"] = audio_s / max(time.time() - self.start, 1e-9)
        self.bar.set_postfix(recon=f"{metrics['loss/recon']:.3f}",
                             d_acc=f"{metrics.get('adv/d_acc', float('nan')):.2f}")
        self.scalars(metrics, tr.step)

    def scalars(self, metrics: dict, step: int) -> None:
        """Write scalars to TensorBoard (rank 0)."""
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        """Close the bar and flush the writer."""
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
