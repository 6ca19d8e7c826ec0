"""One training run: model, adversary, optimisers, data, checkpoints, validation and logging."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from umt.checkpoint import (
    EXPORT_FORMAT,
    TRAIN_FORMAT,
    atomic_save,
    export_state,
    load_file,
    unwrap,
)
from umt.config import ModelConfig, TrainConfig, to_dataclass, to_dict
from umt.data import SegmentSampler, build_cache, open_cache
from umt.errors import UmtError
from umt.model import UniversalTranslator
from umt.nn.classifier import DomainClassifier

log = logging.getLogger(__name__)


class GeneratorLoss(nn.Module):
    """Encoder + decoders as one module (so DDP syncs them): per-domain reconstruction losses.

    Args:
        model: The translator.
        domains: Domains in batch order; each owns ``batch_per_domain`` consecutive rows.
    """

    def __init__(self, model: UniversalTranslator, domains: list[str]) -> None:
        super().__init__()
        self.model, self.domains = model, domains

    def forward(self, x: torch.Tensor, x_aug: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x, x_aug: (K * B, T) clean target and augmented input -> recon (K,), z (K * B, D, F)."""
        z = self.model.encode(x_aug)
        q = self.model.quantize(x)
        rows = x.shape[0] // len(self.domains)
        recon = []
        for k, name in enumerate(self.domains):
            part = slice(k * rows, (k + 1) * rows)
            recon.append(self.model.decoders[name].loss(q[part], z[part]))
        return torch.stack(recon), z


def generator_objective(recon: torch.Tensor, adv_ce: torch.Tensor, lam: float) -> torch.Tensor:
    """Reconstruction minus lambda times the classifier's cross-entropy: the encoder is rewarded
    for latents the classifier cannot place."""
    return recon.mean() - lam * adv_ce


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
        self.device = _device(cfg.trainer.device, rank)
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
        self.sampler = SegmentSampler(
            train, self.domains, d.segment, d.batch_per_domain, seed + 1000 * self.rank,
            d.silence_db, d.augment, d.shift_semitones,
        )
        val_sampler = SegmentSampler(
            val, self.domains, d.segment, d.val_segments, seed, d.silence_db, augment=False
        )
        self.val_batch = val_sampler.next_batch()

    def _setup_model(self, base: dict | None) -> None:
        t, names = self.cfg.trainer, self.domains
        known = list(base["domains"]) if base else []
        model = UniversalTranslator(self.cfg.model, known + [n for n in names if n not in known])
        if base is not None:
            model.encoder.load_state_dict(base["encoder"])
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
        precision = self.cfg.trainer.precision
        if precision not in ("auto", "bf16", "fp32"):
            raise UmtError(f"trainer.precision must be auto, bf16 or fp32, not {precision}")
        use = precision == "bf16" or (precision == "auto" and self.device.type == "cuda")
        if not use:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict:
        """One adversary step then one generator step.

        Args:
            batch: x (K*B, T), x_aug (K*B, T), labels (K*B,) from :class:`SegmentSampler`.

        Returns:
            Flat metrics: ``recon/<domain>``, ``loss/recon``, ``adv/d_loss``, ``adv/d_acc``,
            ``adv/g_ce``, ``loss/g``, ``lr``.
        """
        x, x_aug, labels = (b.to(self.device, non_blocking=True) for b in batch)
        self.model.train()
        self.classifier.train()
        with self._autocast():
            recon, z = self.gen(x, x_aug)
        metrics = {f"recon/{n}": v for n, v in zip(self.domains, recon.tolist(), strict=True)}
        lam = 0.0 if self.frozen else self.cfg.trainer.adv_lambda
        if lam > 0:
            metrics.update(self.classifier_step(z, labels))
            self.classifier.requires_grad_(False)  # the generator step must not move the adversary
            with self._autocast():
                adv_ce = F.cross_entropy(self.classifier(z).float(), labels)
            self.classifier.requires_grad_(True)
        else:
            adv_ce = torch.zeros((), device=self.device)
        loss = generator_objective(recon, adv_ce, lam)
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
        x, _, labels = (b.to(self.device) for b in self.val_batch)
        with self._autocast():
            recon, z = unwrap(self.gen)(x, x)
            acc = (self.classifier(z).argmax(-1) == labels).float().mean().item()
        out = {f"val/recon/{n}": v for n, v in zip(self.domains, recon.tolist(), strict=True)}
        out["val/d_acc"] = acc
        return out

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def state_dict(self) -> dict:
        """Everything needed to resume, as plain types and tensors."""
        state = export_state(self.model)
        state.update({
            "format": TRAIN_FORMAT,
            "config": to_dict(self.cfg),
            "trained_domains": self.domains,
            "step": self.step,
            "classifier": self.classifier.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "sampler": self.sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        })
        return state

    def save(self) -> None:
        """Write the checkpoint atomically (rank 0 only)."""
        if self.rank == 0:
            atomic_save(self.state_dict(), self.checkpoint_path)

    def resume(self) -> bool:
        """Load the last checkpoint of this run folder if there is one."""
        if not self.checkpoint_path.exists():
            return False
        state = load_file(self.checkpoint_path, TRAIN_FORMAT)
        if state["config"]["model"] != to_dict(self.cfg.model) or state["domains"] != unwrap(
            self.model
        ).domains:
            raise UmtError(
                f"{self.checkpoint_path} was trained with another model or other domains; "
                "use a new run folder (hydra.run.dir=...)"
            )
        self.model.encoder.load_state_dict(state["encoder"])
        for name, sd in state["decoders"].items():
            self.model.decoders[name].load_state_dict(sd)
        self.classifier.load_state_dict(state["classifier"])
        for key in ("opt_g", "opt_d", "sched_g", "sched_d"):
            getattr(self, key).load_state_dict(state[key])
        self.step = int(state["step"])
        if self.rank == 0:
            self.sampler.load_state_dict(state["sampler"])
            torch.set_rng_state(state["torch_rng"])
        else:  # other ranks: a fresh stream that differs from every earlier one
            self.sampler.rng = np.random.default_rng([self.cfg.trainer.seed, self.rank, self.step])
        return True


def _device(name: str, rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UmtError("trainer.device=cuda but no CUDA device is available")
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device(name)
