"""Training entry: ``python -m umt.train model=tiny data.root=DIR trainer.max_steps=N``.

Under ``torchrun --nproc_per_node=N`` the same command trains with DDP. Running it again with the
same ``hydra.run.dir`` resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import hydra
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from umt.config import TrainConfig, to_dataclass
from umt.errors import UmtError
from umt.trainer import Trainer

log = logging.getLogger("umt.train")
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs" / "umt")


def fit(trainer: Trainer) -> dict:
    """Train until ``trainer.max_steps``, checkpointing and validating on schedule.

    Returns:
        The metrics of the last step (empty if nothing was left to train).
    """
    t = trainer.cfg.trainer
    if trainer.resume() and trainer.rank == 0:
        log.info("resumed from %s at step %d", trainer.checkpoint_path, trainer.step)
    writer = _writer(trainer)
    bar = tqdm(total=t.max_steps, initial=trainer.step, disable=trainer.rank != 0 or not t.progress,
               dynamic_ncols=True, desc="train")
    metrics: dict = {}
    start, first = time.time(), trainer.step
    while trainer.step < t.max_steps:
        metrics = trainer.train_step(trainer.sampler.next_batch())
        bar.update(1)
        step = trainer.step
        if step % t.log_every == 0 or step == t.max_steps:
            audio_s = (step - first) * trainer.sampler.segment * len(trainer.domains) * \
                trainer.sampler.batch_per_domain * trainer.world / 16_000
            metrics["speed/audio_s_per_s"] = audio_s / max(time.time() - start, 1e-9)
            bar.set_postfix(recon=f"{metrics['loss/recon']:.3f}",
                            d_acc=f"{metrics.get('adv/d_acc', float('nan')):.2f}")
            _log_scalars(writer, metrics, step)
        if step % t.val_every == 0 or step == t.max_steps:
            val = trainer.validate()
            _log_scalars(writer, val, step)
            if trainer.rank == 0:
                log.info("step %d %s", step, " ".join(f"{k}={v:.4f}" for k, v in val.items()))
        if step % t.checkpoint_every == 0 or step == t.max_steps:
            trainer.save()
    bar.close()
    if writer is not None:
        writer.close()
    return metrics


def _writer(trainer: Trainer):
    if trainer.rank != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(trainer.run_dir / "tb"))


def _log_scalars(writer, metrics: dict, step: int) -> None:
    if writer is not None:
        for key, value in metrics.items():
            writer.add_scalar(key, value, step)


def run(cfg: TrainConfig, run_dir: Path) -> dict:
    """Train (or resume) one run in ``run_dir``, alone or as one rank under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() and cfg.trainer.device != "cpu" else "gloo"
        dist.init_process_group(backend)
    try:
        return fit(Trainer(cfg, run_dir, rank, world))
    finally:
        if world > 1:
            dist.destroy_process_group()


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(raw: DictConfig) -> None:
    """Hydra entry point."""
    try:
        cfg = to_dataclass(TrainConfig, OmegaConf.to_container(raw, resolve=True))
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except UmtError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
