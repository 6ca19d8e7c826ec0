"""Typed configuration dataclasses; the hydra YAML in configs/symbolic validates against them.

Validation is the shared one (:func:`plumbing.config.to_dataclass`, re-exported here): a typo or a
value of the wrong type is a one-line :class:`plumbing.errors.UserError`, as in ``umt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plumbing.config import to_dataclass, to_dict

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "TrainerConfig", "to_dataclass", "to_dict"]


@dataclass
class ModelConfig:
    """Sizes of the multitask transformer.

    Attributes:
        name: size name (``tiny`` or ``small``).
        d_model: width of embeddings and attention.
        n_heads: attention heads.
        enc_layers: layers of the bidirectional encoder.
        dec_layers: layers of the causal decoder (with cross-attention for seq2seq).
        d_ff: hidden width of the feed-forward blocks.
        dropout: dropout probability during training.
        seg_len: decoder segment length; memory carries across segments.
        mem_len: tokens of memory kept per layer.
        max_rel: relative distances beyond this share one learned bias.
        attention: relative positions of the decoder's self-attention: ``rel_bias`` (a learned
            per-head bias by distance, clipped at ``max_rel``) or ``txl`` (Transformer-XL:
            sinusoidal distance encodings, ``W_r`` and the biases ``u``, ``v``). The encoder
            always uses ``rel_bias``.
        bar_attention: Museformer-style decoder self-attention: full attention to the own bar
            (causal) and the bars ``bar_offsets`` back, one summary of every other earlier bar.
        bar_offsets: structure-related bars, in bars back from the query's bar.
        align: seq2seq decoder tokens also get the encoder state of the last source note whose
            onset is at or before their time (:mod:`symbolic.align`), through a zero-initialised
            projection: a trained model with it switched on starts out computing exactly what it
            did without.
        vocab_size: set from the tokenizer at build time.
        n_pos: number of Position tokens (set from the tokenizer).
    """

    name: str = "tiny"
    d_model: int = 64
    n_heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.1
    seg_len: int = 128
    mem_len: int = 128
    max_rel: int = 256
    attention: str = "rel_bias"
    bar_attention: bool = False
    bar_offsets: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 12, 16, 24, 32])
    align: bool = False
    vocab_size: int = 0
    n_pos: int = 0


@dataclass
class DataConfig:
    """Where the MIDI comes from and how it is cut.

    Attributes:
        source: ``chorales`` (music21 corpus, converted once) or ``folder`` (any MIDI folder).
        root: folder of MIDI files when ``source=folder``.
        cache_dir: git-ignored cache for converted MIDI, manifest and tokens.
        transpose: training pieces are shifted by a random semitone in [-transpose, transpose].
        window_bars: bars per melody/harmony window for the seq2seq tasks.
        max_src_len: longest seq2seq source window in tokens (longer ones are cut).
        max_tgt_len: longest seq2seq target window in tokens.
        mlm_len: encoder crop length for the masked task.
        val_fraction: fraction of pieces in the validation split.
        test_fraction: fraction of pieces in the test split.
        limit: use only the first N pieces (for tests); 0 = all.
        min_harmony_fill: the seq2seq tasks train on pieces whose harmony sounds in at least
            this share of their bars (0: any piece with a harmony note). Folk tunes with an odd
            double stop otherwise teach that a harmony is mostly empty bars.
        seq2seq_weights: relative draw weight of a collection (the first folder of a piece's
            name, e.g. ``bach``) in the training seq2seq pool; unnamed collections weigh 1;
            validation stays unweighted. Hydra adds keys to this empty dict with a ``+``:
            ``+data.seq2seq_weights.bach=6``.
    """

    source: str = "chorales"
    root: str = ""
    cache_dir: str = "cache/symbolic"
    transpose: int = 5
    window_bars: int = 4
    max_src_len: int = 160
    max_tgt_len: int = 384
    mlm_len: int = 256
    val_fraction: float = 0.05
    test_fraction: float = 0.1
    limit: int = 0
    min_harmony_fill: float = 0.5
    seq2seq_weights: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainerConfig:
    """Optimisation and bookkeeping.

    Attributes:
        run_dir: git-ignored folder for resumable checkpoints and logs.
        steps: total optimiser steps.
        batch_size: sequences per task per step.
        lr: peak AdamW learning rate (linear warm-up, cosine decay).
        warmup: warm-up steps.
        weight_decay: AdamW weight decay.
        grad_clip: max gradient norm.
        tasks: tasks trained together in every step.
        ckpt_every: steps between resumable checkpoints.
        log_every: steps between log lines.
        eval_batches: validation batches per task at each checkpoint.
        threads: torch CPU threads.
        seed: random seed.
        export: path of the export written at the end (plain types, weights_only loadable).
        max_minutes: stop (with a checkpoint and export) after this wall time; 0 = no limit.
        device: ``cpu`` (the default: the shipped model's recipe), ``auto``, ``cuda`` or
            ``cuda:N`` (:func:`plumbing.device.resolve_device`).
        init_from: a training state (``last.pt``) or export whose weights start a new run
            (fine-tuning); parameters only this run's model has (``model.align``) keep their
            initialisation. Ignored when the run resumes.
        precision: ``auto`` (bf16 autocast on CUDA, float32 on the CPU), ``bf16`` or ``fp32``:
            the forward pass's arithmetic; weights and optimiser state stay float32.
        time_schedule: the learning rate's cosine decay runs over ``max_minutes`` of wall time
            instead of ``steps`` (:func:`symbolic.train.lr_at`): a run sized by time. The
            minutes are the leg's: a resumed leg decays again from the peak.
        workers: background processes drawing the training batches (:mod:`symbolic.stream`);
            0 draws them between steps, as the shipped CPU recipes did.
    """

    run_dir: str = "runs/symbolic"
    steps: int = 100
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    tasks: list[str] = field(default_factory=lambda: ["lm", "mlm", "mel2harm", "harm2mel"])
    ckpt_every: int = 50
    log_every: int = 10
    eval_batches: int = 4
    threads: int = 1
    seed: int = 0
    export: str = ""
    max_minutes: float = 0.0
    device: str = "cpu"
    init_from: str = ""
    precision: str = "auto"
    time_schedule: bool = False
    workers: int = 0


@dataclass
class TrainConfig:
    """Root config: one group per part."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
