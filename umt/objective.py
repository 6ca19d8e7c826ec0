"""What a training step optimises: per-domain reconstruction (or translation) and the note head.

A batch holds, per row, the source the encoder and the feature extractors read and the target
its row's decoder must produce: the same audio (reconstruction, the paper's objective) or the
target instrument's render of the same notes (paired training on a data.synth build).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from umt.config import DataConfig
from umt.errors import UmtError
from umt.model import UniversalTranslator
from umt.nn.notes import labels_as_input, note_loss

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One training batch, rows in domain-major order of their target.

    Attributes:
        source: (N, T) clean source audio (features are computed from it).
        source_aug: (N, T) the encoder's input: the source, pitch-shifted in part.
        target: (N, T) what each row's decoder must produce.
        source_domain: (N,) int64 the source's instrument (the adversary's label).
        target_domain: (N,) int64 the target's instrument.
        active: (N, 88, F) key activity labels, or None where the data has none.
        onsets: (N, 88, F) onset labels, or None.
    """

    source: torch.Tensor
    source_aug: torch.Tensor
    target: torch.Tensor
    source_domain: torch.Tensor
    target_domain: torch.Tensor
    active: torch.Tensor | None = None
    onsets: torch.Tensor | None = None

    @classmethod
    def of(cls, batch: object) -> Batch:
        """A Batch from :class:`umt.data.SegmentSampler`'s (x, x_aug, labels) or from any object
        with these fields (:class:`umt.pairs.PairedBatch`)."""
        if isinstance(batch, tuple):
            x, x_aug, labels = batch
            return cls(x, x_aug, x, labels, labels)
        return cls(**{f.name: getattr(batch, f.name, None) for f in fields(cls)})

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: None if v is None else v.to(device, non_blocking=True)
                        for k, v in moved.items()})

    @property
    def labelled(self) -> bool:
        """Whether the batch carries note labels."""
        return self.active is not None and self.onsets is not None


class GeneratorLoss(nn.Module):
    """Encoder + decoders as one module (so DDP syncs them): per-domain losses and the note head.

    Args:
        model: The translator.
        domains: Domains in batch order; each owns ``batch_per_domain`` consecutive rows.
    """

    def __init__(self, model: UniversalTranslator, domains: list[str]) -> None:
        super().__init__()
        self.model, self.domains = model, domains

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per-domain decoder losses (K,), the latent z (N, D, F) for the adversary, and the
        note head's loss (None without a head or labels).

        With labels, decoders read the true notes (the note head learns them beside); without,
        they read the head's."""
        z, logits = self.model.encode_notes(batch.source_aug)
        if batch.labelled:
            notes = labels_as_input(batch.active, batch.onsets)
        else:  # no labels: the decoders read the note head's view of the encoder's input
            notes = None if logits is None else torch.sigmoid(logits)
        inputs = self.model.condition(batch.source, z, notes)
        rows = batch.target.shape[0] // len(self.domains)
        recon = []
        for k, name in enumerate(self.domains):
            part = slice(k * rows, (k + 1) * rows)
            mine = {key: value[part] for key, value in inputs.items()}
            recon.append(self.model.decoders[name].loss(batch.target[part], mine))
        heads = None
        if logits is not None and batch.labelled:
            heads = note_loss(logits, batch.active, batch.onsets)
        return torch.stack(recon), z, heads


def paired_samplers(d: DataConfig, cache: Path, domains: list[str], seed: int,
                    val_seed: int) -> tuple[object, object]:
    """Training and validation samplers of labelled (and, with ``d.paired``, paired) segments:
    from a data.synth build its MIDI and pairs, from any other folder the pitch tracker's notes
    of each file (one line per file; no pairs).

    Raises:
        UmtError: a data.synth build that does not match its cache or lacks MIDI files, or
            ``d.paired`` on a folder that is not a build.
    """
    from umt.pairs import PairedSampler, folder_sampler, is_build

    common = {"domains": domains, "segment": d.segment, "silence_db": d.silence_db,
              "shift_semitones": d.shift_semitones, "paired": d.paired}
    if is_build(d.root):
        make = functools.partial(PairedSampler.from_build, d.root, cache)
    elif d.paired > 0:
        raise UmtError(f"data.paired needs a data.synth build (renders of the same notes); "
                       f"{d.root} is not one: set data.paired=0")
    else:
        log.warning("%s is no data.synth build: note labels come from the pitch tracker (one "
                    "line per file)", d.root)
        make = functools.partial(folder_sampler, cache)
    train = make("train", batch_per_domain=d.batch_per_domain, seed=seed, augment=d.augment,
                 **common)
    val = make("val", batch_per_domain=d.val_segments, seed=val_seed, augment=False, **common)
    return train, val
