import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from umt_helpers import CONFIGS, train_config

from plumbing.errors import UserError
from umt.config import TrainConfig, to_dataclass
from umt.model import UniversalTranslator
from umt.objective import Batch
from umt.trainer import Trainer, generator_objective

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["tiny", "small", "paper", "release"])
def test_every_shipped_config_composes_and_runs_a_forward_pass(name, toy_root):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        raw = compose("train", overrides=[f"model={name}", f"data.root={toy_root}"])
    cfg = to_dataclass(TrainConfig, OmegaConf.to_container(raw, resolve=True))
    assert cfg.model.name == name
    model = UniversalTranslator(cfg.model, ["a", "b"])
    x = 0.1 * torch.randn(1, 1000)
    with torch.no_grad():
        z = model.encode(x)
        loss = model.decoders["b"].loss(x, model.condition(x, z))
    assert z.shape == (1, cfg.model.encoder.latent_dim, 2)
    assert 0 < loss.item() < 10


def test_a_typo_in_the_config_fails_fast(toy_root):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        raw = compose("train", overrides=["model=tiny", f"data.root={toy_root}"])
    d = OmegaConf.to_container(raw)
    d["trainer"]["max_stpes"] = 3
    with pytest.raises(UserError, match="max_stpes"):
        to_dataclass(TrainConfig, d)
    d["trainer"].pop("max_stpes")
    d["trainer"]["max_steps"] = "many"
    with pytest.raises(UserError, match="many"):  # a wrong type fails as fast
        to_dataclass(TrainConfig, d)


def test_classifier_step_leaves_encoder_grads_untouched(toy_root, tmp_path):
    tr = Trainer(train_config(toy_root, tmp_path), tmp_path / "run")
    batch = tr.sampler.next_batch()
    _, z, _ = tr.gen(Batch.of(batch))
    labels = batch[2]
    before = [p.detach().clone() for p in tr.classifier.parameters()]
    metrics = tr.classifier_step(z, labels)
    assert all(p.grad is None for p in tr.model.encoder.parameters())
    after = list(tr.classifier.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, after, strict=True))
    assert set(metrics) == {"adv/d_loss", "adv/d_acc"}


def test_adversarial_term_pushes_the_latent_to_confuse_the_classifier(toy_root, tmp_path):
    tr = Trainer(train_config(toy_root, tmp_path), tmp_path / "run")
    x, x_aug, labels = tr.sampler.next_batch()
    z = tr.model.encode(x_aug).detach().requires_grad_(True)
    ce = torch.nn.functional.cross_entropy(tr.classifier(z), labels)
    generator_objective(torch.zeros(2), ce, 1e-2).backward()
    with torch.no_grad():  # a small step down the generator's gradient raises the classifier's loss
        ce_after = torch.nn.functional.cross_entropy(tr.classifier(z - 10.0 * z.grad), labels)
    assert ce_after > ce


def test_train_steps_return_namespaced_metrics_and_resume(toy_root, tmp_path):
    cfg = train_config(toy_root, tmp_path)
    first = Trainer(cfg, tmp_path / "run").fit()
    assert {"recon/saw", "recon/sine", "adv/d_loss", "adv/d_acc", "loss/recon"} <= set(first)
    assert all(torch.isfinite(torch.tensor(v)) for v in first.values())
    ckpt = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert ckpt["step"] == 2
    cfg.trainer.max_steps = 3
    resumed = Trainer(cfg, tmp_path / "run")
    resumed.fit()
    assert resumed.step == 3
    # the resumed run continues the optimiser state, it does not restart it
    assert resumed.opt_g.state_dict()["state"][0]["step"].item() == 3


def _same(a, b) -> bool:
    """Equal nested state (dicts, lists, tensors, numbers)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def test_resume_restores_every_piece_of_the_saved_state(toy_root, tmp_path):
    cfg = train_config(toy_root, tmp_path)
    trained = Trainer(cfg, tmp_path / "run")
    trained.fit()
    saved = torch.load(trained.checkpoint_path, weights_only=True)
    header = {"format", "config", "domains", "trained_domains"}
    assert set(saved) == header | set(trained.state_table())  # every key named once, in the table
    fresh = Trainer(cfg, tmp_path / "run")
    assert not _same(fresh.state_dict()["encoder"], saved["encoder"])
    assert fresh.resume() and fresh.step == 2
    assert _same(fresh.state_dict(), saved)  # weights, optimisers, schedulers, sampler, RNG


def test_a_crash_while_saving_keeps_the_previous_checkpoint(toy_root, tmp_path, monkeypatch):
    tr = Trainer(train_config(toy_root, tmp_path), tmp_path / "run")
    tr.fit()
    good = tr.checkpoint_path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        tr.save()
    assert tr.checkpoint_path.read_bytes() == good
    assert [p.name for p in tr.checkpoint_path.parent.iterdir()] == ["last.pt"]


def test_cli_trains_exports_and_resumes(toy_root, tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    cmd = [sys.executable, "-m", "umt.train", "model=tiny", f"data.root={toy_root}",
           f"data.cache_dir={cache}", "data.segment=1600", "data.batch_per_domain=1",
           "trainer=smoke", "trainer.max_steps=2", "trainer.progress=false", f"hydra.run.dir={run}"]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)
    again = cmd[:-3] + ["trainer.max_steps=3", "trainer.progress=false", f"hydra.run.dir={run}"]
    subprocess.run(again, check=True, cwd=ROOT, env=env, capture_output=True)
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["step"] == 3
    export = [sys.executable, "-m", "umt.export", str(run), "-o", str(tmp_path / "m.pt")]
    out = subprocess.run(export, cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "step 3" in out.stdout
    bad = subprocess.run(cmd[:3] + ["data.root=/nonexistent", f"hydra.run.dir={tmp_path / 'r2'}"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "error: data root /nonexistent is not a folder" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_max_minutes_stops_the_run_and_counts_every_leg(toy_root, tmp_path):
    cfg = train_config(toy_root, tmp_path)
    cfg.trainer.max_steps = 1000
    cfg.trainer.max_minutes = 1e-9  # spent by the first step
    first = Trainer(cfg, tmp_path / "run")
    first.fit()
    assert first.step == 1 and first.train_seconds > 0
    again = Trainer(cfg, tmp_path / "run")
    again.fit()  # the saved budget is spent: nothing more trains
    assert again.step == 1 and again.train_seconds == first.train_seconds
    cfg.trainer.max_minutes = 0  # no time budget: on to max_steps
    cfg.trainer.max_steps = 3
    more = Trainer(cfg, tmp_path / "run")
    more.fit()
    assert more.step == 3 and more.train_seconds > first.train_seconds


def test_a_checkpoint_from_before_the_time_budget_resumes(toy_root, tmp_path):
    cfg = train_config(toy_root, tmp_path)
    tr = Trainer(cfg, tmp_path / "run")
    tr.fit()
    saved = torch.load(tr.checkpoint_path, weights_only=True)
    del saved["train_seconds"]
    torch.save(saved, tr.checkpoint_path)
    old = Trainer(cfg, tmp_path / "run")
    assert old.resume() and old.step == 2 and old.train_seconds == 0.0


def test_a_resumed_leg_trains_at_its_own_learning_rate(toy_root, tmp_path):
    cfg = train_config(toy_root, tmp_path)
    Trainer(cfg, tmp_path / "run").fit()
    cfg.trainer.max_steps, cfg.trainer.lr, cfg.trainer.d_lr = 3, 1e-4, 2e-4
    leg = Trainer(cfg, tmp_path / "run")
    leg.fit()
    gamma = cfg.trainer.lr_decay ** (1 / cfg.trainer.decay_every)
    saved = torch.load(leg.checkpoint_path, weights_only=True)
    assert saved["step"] == 3
    for key, lr in (("opt_g", 1e-4), ("opt_d", 2e-4)):
        group = saved[key]["param_groups"][0]
        assert group["lr"] == pytest.approx(lr * gamma**3) and group["initial_lr"] == lr
    again = Trainer(cfg, tmp_path / "run")  # the same settings again: the state is untouched
    assert again.resume() and _same(again.state_dict(), saved)
