"""Training batches of every task, drawn in the loop or by background worker processes.

On a GPU the model step of a small transformer takes milliseconds while drawing, transposing and
padding 4 x B sequences in numpy takes tens: ``trainer.workers=N`` draws them in N processes
(a ``DataLoader`` over an endless stream, pinned memory, copies that overlap compute). Each worker
has its own random stream, seeded from the run's seed, the step the stream starts at and the
worker's index, so a resumed run draws fresh batches, as the in-loop stream does.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from plumbing.errors import UserError
from symbolic.data import TaskBatcher

TASKS = ("lm", "mlm", "mel2harm", "harm2mel")
Batches = dict[str, dict[str, Tensor]]


def task_batch(batcher: TaskBatcher, task: str, size: int, seg_len: int,
               device: torch.device | None = None) -> dict[str, Tensor]:
    """One batch of ``task`` (``lm``, ``mlm``, ``mel2harm``, ``harm2mel``), on ``device``.

    Raises:
        UserError: an unknown task name.
    """
    if task == "lm":
        b = batcher.lm(size, 2 * seg_len)
    elif task == "mlm":
        b = batcher.mlm(size)
    elif task in ("mel2harm", "harm2mel"):
        b = batcher.seq2seq(size, to_harmony=task == "mel2harm")
    else:  # a typo in trainer.tasks
        raise _unknown(task)
    return b if device is None else to_device(b, device)


def to_device(b: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """Every tensor of a batch on ``device`` (asynchronous from pinned memory)."""
    return {k: v.to(device, non_blocking=True) for k, v in b.items()}


def check_tasks(tasks: list[str]) -> None:
    """Raises UserError for a task name that is not one of :data:`TASKS` (before any worker
    starts: an error inside a worker would surface as a traceback)."""
    for task in tasks:
        if task not in TASKS:
            raise _unknown(task)


def _unknown(task: str) -> UserError:
    return UserError(f"unknown task {task!r} in trainer.tasks: use {', '.join(TASKS)}")


class _Endless(IterableDataset):
    """Step after step of ``{task: batch}`` from one batcher, reseeded per worker."""

    def __init__(self, batcher: TaskBatcher, tasks: list[str], size: int, seg_len: int,
                 seed: int, step: int):
        self.batcher, self.tasks, self.size, self.seg_len = batcher, tasks, size, seg_len
        self.seed, self.step = seed, step

    def __iter__(self) -> Iterator[Batches]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        self.batcher.rng = np.random.default_rng([self.seed, self.step, worker])
        while True:
            yield {t: task_batch(self.batcher, t, self.size, self.seg_len) for t in self.tasks}


def batch_stream(batcher: TaskBatcher, tasks: list[str], size: int, seg_len: int,
                 device: torch.device, workers: int, seed: int, step: int) -> Iterator[Batches]:
    """Endless training batches, ``{task: batch}`` per step, already on ``device``.

    Args:
        batcher: draws from the training pieces; with ``workers == 0`` its own ``rng`` is used
            as it stands (the in-loop stream of earlier runs, draw for draw).
        tasks: the tasks of every step.
        size: sequences per task per step.
        seg_len: the model's segment length (continuation crops are two segments).
        device: where the batches go.
        workers: background processes drawing batches; 0 draws in this process.
        seed, step: seed the workers' streams (with each worker's index).
    """
    check_tasks(tasks)
    if workers <= 0:
        while True:
            yield {t: task_batch(batcher, t, size, seg_len, device) for t in tasks}
    loader = DataLoader(_Endless(batcher, tasks, size, seg_len, seed, step), batch_size=None,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        prefetch_factor=4, persistent_workers=False)
    for batches in loader:
        yield {t: to_device(b, device) for t, b in batches.items()}
