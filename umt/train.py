"""Training entry: ``python -m umt.train model=tiny data.root=DIR trainer.max_steps=N``.

Under ``torchrun --nproc_per_node=N`` the same command trains with DDP. Running it again with the
same ``hydra.run.dir`` resumes from the last checkpoint. Ctrl-C (SIGINT) or SIGTERM (a cluster's
preemption) finishes the step under way, saves a checkpoint, prints one line and exits with
130 / 143; the next run resumes there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from plumbing.signals import Interrupted
from umt.config import TrainConfig, to_dataclass
from umt.errors import UmtError
from umt.trainer import Trainer

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs" / "umt")


def run(cfg: TrainConfig, run_dir: Path) -> dict:
    """Train (or resume) one run in ``run_dir``, alone or as one rank under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() and cfg.trainer.device != "cpu" else "gloo"
        dist.init_process_group(backend)
    try:
        return Trainer(cfg, run_dir, rank, world).fit()
    finally:
        if world > 1:
            dist.destroy_process_group()


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(raw: DictConfig) -> None:
    """Hydra entry point: exit 2 on a user error, 130/143 after SIGINT/SIGTERM (saved)."""
    try:
        cfg = to_dataclass(TrainConfig, OmegaConf.to_container(raw, resolve=True))
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except UmtError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as stop:
        if int(os.environ.get("RANK", "0")) == 0:  # one line for the whole run
            print(stop, file=sys.stderr)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:  # before training began, or a second Ctrl-C during the save
        print("error: interrupted; nothing saved since the last checkpoint", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
