"""One device resolver for training, inference and the CLIs."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

import torch

from plumbing.errors import UserError


def resolve_device(device: str | torch.device = "auto", rank: int | None = None) -> torch.device:
    """The device a process should use.

    ``auto`` is CUDA when present, else the CPU. A bare ``cuda`` (or ``auto`` on a GPU machine)
    takes GPU ``rank % count``; ``rank`` defaults to torchrun's ``LOCAL_RANK`` (0 outside it),
    so the ranks of one node spread over its GPUs. ``cuda:N`` is taken as given.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a torch.device.
        rank: Local rank choosing the GPU; default: ``$LOCAL_RANK`` or 0.

    Raises:
        UserError: CUDA asked for on a machine without it, or an unknown device name.
    """
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type != "cuda":
        return dev
    if not torch.cuda.is_available():
        raise UserError(f"device {name} asked for, but no CUDA device is available")
    if dev.index is not None:
        return dev
    rank = int(os.environ.get("LOCAL_RANK", 0)) if rank is None else rank
    return torch.device("cuda", rank % torch.cuda.device_count())


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to run under bf16 autocast: ``bf16``, or ``auto`` on CUDA or on a CPU with native
    bf16 arithmetic (AVX512-BF16 or AMX; elsewhere bf16 is emulated and slower than fp32).

    Raises:
        UserError: ``precision`` is not auto, bf16 or fp32.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise UserError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and native_bf16())


def native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware (AVX512-BF16 or AMX)."""
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def training_autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The forward pass's arithmetic in training (``trainer.precision``): bf16 autocast for
    ``bf16``, or ``auto`` on CUDA; float32 otherwise (``auto`` on any CPU, so CPU recipes do
    not change with the CPU they run on, unlike :func:`use_bf16` for inference).

    Raises:
        UserError: ``precision`` is not auto, bf16 or fp32.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise UserError(f"trainer.precision must be auto, bf16 or fp32, not {precision!r}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
