"""Data split, masks, and one training step per task on real chorales."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from plumbing.errors import UserError
from symbolic.checkpoint import load_export
from symbolic.config import DataConfig, ModelConfig
from symbolic.data import IGNORE, TaskBatcher, load_pieces, make_manifest
from symbolic.tokens import K_DUR, K_PITCH
from symbolic.train import build_model, task_batch, train_step

TASKS = ["lm", "mlm", "mel2harm", "harm2mel"]


@pytest.fixture(scope="module")
def setup(cache_dir, tokenizer, table):
    data = DataConfig(cache_dir=str(cache_dir), limit=4, transpose=3)
    pieces = load_pieces(data, tokenizer)
    all_pieces = [p for split in pieces.values() for p in split]
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_heads=2, enc_layers=1, dec_layers=1, d_ff=64,
                                    seg_len=32, mem_len=32))
    batcher = TaskBatcher(all_pieces, table, data, 32, model.cfg.n_pos, augment=True, seed=0)
    return model, batcher


def test_manifest_is_fixed_by_piece():
    names = [f"piece{i}" for i in range(200)]
    a = make_manifest(names, 0.1, 0.1)
    b = make_manifest(list(reversed(names)) + ["new"], 0.1, 0.1)
    for split in a:  # adding a piece never moves another piece
        assert set(a[split]) <= set(b[split])
    assert 5 < len(a["test"]) < 40 and not set(a["test"]) & set(a["train"])


def test_melody_and_harmony_are_the_voices(setup, table):
    _, batcher = setup
    p = batcher.pieces[0]
    n = {k: int((table.kind[getattr(p, k)] == K_PITCH).sum()) for k in ("full", "melody",
                                                                         "harmony")}
    assert n["melody"] + n["harmony"] == n["full"] and n["harmony"] > 2 * n["melody"]


@pytest.mark.parametrize("mode,kind", [(1, K_PITCH), (2, K_DUR)])
def test_all_pitch_and_all_duration_masks(setup, table, mode, kind):
    _, batcher = setup
    ids = batcher.pieces[0].full[:200]
    mask = batcher.mask_for(ids, mode)
    assert np.array_equal(mask, table.kind[ids] == kind)


def test_mlm_batch_targets_only_masked(setup, table):
    _, batcher = setup
    b = batcher.mlm(4)
    masked = b["ids"] == table.id("MASK_None")
    assert masked.any()
    assert torch.all((b["target"] != IGNORE) == masked)


def test_transpose_augmentation_shifts_pitches(setup, table):
    _, batcher = setup
    pitches = set()
    for _ in range(10):
        full, _, _ = batcher._piece()
        pitches.add(int(table.value[full[table.kind[full] == K_PITCH]].min()))
    assert len(pitches) > 1  # different random shifts of the same few pieces


@pytest.mark.parametrize("task", TASKS)
def test_one_training_step_per_task(setup, task):
    model, batcher = setup
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    metrics = train_step(model, opt, {task: task_batch(batcher, task, 2, 32)}, 1.0)
    assert np.isfinite(metrics[f"loss/{task}"])
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    uses_encoder = task != "lm"
    uses_decoder = task != "mlm"
    assert "tok_emb.weight" in moved  # shared by every face
    assert any(k.startswith("encoder.") for k in moved) == uses_encoder
    assert any(k.startswith("decoder.") for k in moved) == uses_decoder
    assert any(".cross." in k for k in moved) == (task in ("mel2harm", "harm2mel"))


def test_training_lowers_the_loss(setup):
    """A few steps on one fixed batch must fit it: the loss and the optimiser are wired right."""
    model, batcher = setup
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = {t: task_batch(batcher, t, 2, 32) for t in TASKS}
    first = train_step(model, opt, batch, 1.0)
    for _ in range(15):
        last = train_step(model, opt, batch, 1.0)
    for t in TASKS:
        assert last[f"loss/{t}"] < first[f"loss/{t}"] - 0.3


def test_export_loads_with_weights_only(tiny_export):
    blob = torch.load(tiny_export, weights_only=True)
    assert set(blob) == {"format", "config", "model", "meta"}
    model = load_export(tiny_export)
    assert model.cfg.name == "tiny" and not model.training


def test_load_export_of_a_wrong_or_missing_file_is_a_one_line_user_error(tiny_export, tmp_path):
    state = tiny_export.parent / "last.pt"  # the training state is not an export
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    for path, says in [(state, "is not a symbolic export"), (junk, "is not a symbolic export"),
                       (tmp_path / "missing.pt", "no such symbolic export")]:
        with pytest.raises(UserError, match=says) as err:
            load_export(path)
        assert "\n" not in str(err.value)


def test_files_added_to_a_folder_join_the_split(chorale_paths, tokenizer, tmp_path):
    import shutil

    midis = tmp_path / "midis"
    midis.mkdir()
    for p in chorale_paths[:2]:
        shutil.copy(p, midis)
    cfg = DataConfig(source="folder", root=str(midis), cache_dir=str(tmp_path / "cache"))
    names = lambda s: {p.name for split in s.values() for p in split}  # noqa: E731
    first = names(load_pieces(cfg, tokenizer))
    for p in chorale_paths[2:4]:
        shutil.copy(p, midis)
    later = load_pieces(cfg, tokenizer)  # the manifest of 2 must not hide the others
    assert len(first) == 2 and len(names(later)) == 4 and first <= names(later)
    moved = load_pieces(replace(cfg, val_fraction=0.5, test_fraction=0.5), tokenizer)
    split = lambda s: {p.name: k for k, ps in s.items() for p in ps}  # noqa: E731
    assert split(moved) == split(later)  # other fractions move no piece already split
