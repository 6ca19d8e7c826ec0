"""Typed configuration for the translation model, its data and its training.

Hydra YAML in ``configs/umt/`` is merged onto these dataclasses, so a misspelt key fails at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The shared validator (a typo or a wrong type is a one-line UserError), re-exported here.
from plumbing.config import to_dataclass, to_dict  # noqa: F401

# Where a frame decoder's notes come from when translating (umt.inference, umt.chords).
PITCH_SOURCES = ("head", "tracker", "chords", "auto")


@dataclass
class EncoderConfig:
    """Non-causal dilated residual encoder. Dilations run 1, 2, 4, ... within each block."""

    channels: int = 128
    blocks: int = 3
    layers: int = 10
    kernel: int = 3
    latent_dim: int = 64
    pool: int = 800


@dataclass
class DecoderConfig:
    """A decoder kind (:data:`umt.nn.decoders.KINDS`) and its sizes; ``wavenet`` is the paper's
    causal WaveNet (kernel 2, gated units, residual and skip paths)."""

    kind: str = "wavenet"
    blocks: int = 4
    layers: int = 10
    kernel: int = 2
    residual: int = 128
    skip: int = 128
    gate: int = 128
    classes: int = 256
    # Share of the teacher-forced past samples replaced by random classes while training, so
    # the decoder cannot lean on its true past alone (the pilot: RPA 0.40 -> 0.46 at 25%).
    corrupt: float = 0.0


@dataclass
class FrameDecoderConfig:
    """The ``frame`` decoder kind (:mod:`umt.nn.frame`): a GRU over frames drives one harmonic
    bank per sounding note plus filtered noise (:mod:`umt.nn.synth`)."""

    hop: int = 160  # samples per frame: 100 frames/s
    hidden: int = 192
    voices: int = 4  # notes sounding at once, each its own harmonic bank
    harmonics: int = 40
    noise_bands: int = 33


@dataclass
class NoteHeadConfig:
    """The note head on the shared encoder: 88-key activity and onsets per frame."""

    enabled: bool = False
    hop: int = 160
    weight: float = 1.0  # of its BCE loss beside the reconstruction


@dataclass
class InputConfig:
    """One named conditioning input of the decoders (:mod:`umt.nn.condition`).

    ``feature`` names its extractor in :data:`umt.features.FEATURES` (``latent`` is the
    encoder's output). ``hop`` is its rate: samples per frame, or 1 for a per-sample input (fed
    at the decoder's input); 0 takes the feature's own (the latent: the encoder's ``pool``).
    ``channels`` 0 takes the feature's own as well.
    """

    name: str = "z"
    feature: str = "latent"
    hop: int = 0
    channels: int = 0


@dataclass
class ClassifierConfig:
    """Domain-confusion classifier on the latent: 1x1 convs with ELU, averaged over time."""

    hidden: int = 100
    layers: int = 3
    dropout: float = 0.0


@dataclass
class ModelConfig:
    """The whole network: one encoder, one decoder per domain, one adversary."""

    name: str = "paper"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    frame: FrameDecoderConfig = field(default_factory=FrameDecoderConfig)
    notes: NoteHeadConfig = field(default_factory=NoteHeadConfig)
    # The decoders' conditioning inputs; the paper's: the latent alone.
    condition: list[InputConfig] = field(default_factory=lambda: [InputConfig()])


@dataclass
class DataConfig:
    """Where the audio lives and how training segments are drawn."""

    root: str = "???"
    cache_dir: str = "cache/umt"
    domains: list[str] = field(default_factory=list)  # empty = every folder under root
    segment: int = 16_000  # samples per training segment (1 s at 16 kHz)
    batch_per_domain: int = 4
    val_segments: int = 8  # fixed validation segments per domain
    silence_db: float = -50.0  # segments quieter than this are redrawn
    augment: bool = True
    shift_semitones: float = 0.5
    # Share of training segments whose decoder target is another instrument's render of the
    # same notes (a data.synth build); 0 = plain reconstruction.
    paired: float = 0.0


@dataclass
class TrainerConfig:
    """Optimisation, checkpointing and logging."""

    max_steps: int = 100_000
    max_minutes: float = 0.0  # training time budget over all legs of the run; 0 = none
    lr: float = 1e-3
    lr_decay: float = 0.995  # multiplied every `decay_every` steps
    decay_every: int = 1000
    grad_clip: float = 1.0
    adv_lambda: float = 1e-2
    d_lr: float = 1e-3
    checkpoint_every: int = 1000
    val_every: int = 1000
    log_every: int = 10
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32
    activation_checkpointing: bool = False
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    finetune_from: str = ""  # an export: start from its encoder (and decoders)
    freeze_encoder: bool = False
    progress: bool = True


@dataclass
class TrainConfig:
    """Everything one training run needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
