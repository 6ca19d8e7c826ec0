import pytest
import torch
from umt_helpers import model_config, train_config

from umt.checkpoint import EXPORT_FORMAT, atomic_save, export_domains, load_export
from umt.errors import UmtError
from umt.export import export
from umt.trainer import Trainer


@pytest.fixture(scope="module")
def exported(toy_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    tr = Trainer(train_config(toy_root, tmp, max_steps=1), tmp / "run")
    tr.fit()
    export(tmp / "run", tmp / "model.pt")
    return tmp / "model.pt", tr


def test_export_loads_with_weights_only_and_matches_the_trained_model(exported):
    path, tr = exported
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == EXPORT_FORMAT and set(raw) >= {"config", "encoder", "decoders"}
    assert "classifier" not in raw and "opt_g" not in raw
    model = load_export(path)
    x = 0.2 * torch.randn(1, 1600)
    with torch.no_grad():
        tr.model.eval()
        torch.testing.assert_close(model.encode(x), tr.model.encode(x))
        q = model.quantize(x)
        inputs = model.condition(x)
        torch.testing.assert_close(model.decoders["sine"](q, inputs),
                                   tr.model.decoders["sine"](q, inputs))


def test_one_decoder_loads_alone(exported):
    model = load_export(exported[0], domains=["saw"])
    assert model.domains == ["saw"]
    assert export_domains(exported[0]) == ["saw", "sine"]


def test_unknown_instrument_lists_the_known_ones(exported):
    with pytest.raises(UmtError, match="no instrument piano; it has: saw, sine"):
        load_export(exported[0], domains=["piano"])


def test_bad_model_files(tmp_path, exported):
    (tmp_path / "junk.pt").write_bytes(b"\x00not a model")
    with pytest.raises(UmtError, match="not a umt model file"):
        load_export(tmp_path / "junk.pt")
    atomic_save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UmtError, match="not a umt export"):
        load_export(tmp_path / "other.pt")
    raw = torch.load(exported[0], weights_only=True)
    raw["format"] = "umt-export/99"
    atomic_save(raw, tmp_path / "future.pt")
    with pytest.raises(UmtError, match="umt-export/99"):
        load_export(tmp_path / "future.pt")
    with pytest.raises(UmtError, match="no such model"):
        load_export(tmp_path / "missing.pt")


def test_finetune_adds_an_instrument_with_the_encoder_frozen(exported, tmp_path):
    from umt.toy import make_toy_dataset

    new = make_toy_dataset(tmp_path / "new", domains=("square",), files=3)
    cfg = train_config(
        new, tmp_path, max_steps=2, finetune_from=str(exported[0]), freeze_encoder=True
    )
    cfg.model = model_config("small")  # ignored: the base export's sizes win
    tr = Trainer(cfg, tmp_path / "ft")
    enc_before = {k: v.clone() for k, v in tr.model.encoder.state_dict().items()}
    saw_before = {k: v.clone() for k, v in tr.model.decoders["saw"].state_dict().items()}
    tr.fit()
    assert tr.model.domains == ["saw", "sine", "square"]
    for k, v in tr.model.encoder.state_dict().items():
        assert torch.equal(v, enc_before[k])
    for k, v in tr.model.decoders["saw"].state_dict().items():
        assert torch.equal(v, saw_before[k])
    export(tmp_path / "ft", tmp_path / "ft.pt")
    assert export_domains(tmp_path / "ft.pt") == ["saw", "sine", "square"]
