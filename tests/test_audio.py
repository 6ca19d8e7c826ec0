import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from umt.audio import load, mu_law_decode, mu_law_encode, normalize_loudness, resample, save
from umt.errors import UmtError


def test_mu_law_round_trip_is_within_one_quantisation_step():
    x = torch.linspace(-1, 1, 10001)
    y = mu_law_decode(mu_law_encode(x))
    # the step of 8-bit mu-law grows with amplitude; near full scale it is ~0.03
    assert (y - x).abs().max() < 0.035
    assert (y - x).abs()[4900:5100].max() < 1e-3  # fine resolution near zero
    q = torch.arange(256)
    assert torch.equal(mu_law_encode(mu_law_decode(q)), q)


def test_mu_law_agrees_with_torchaudio():
    x = torch.rand(5000) * 2 - 1
    ours, theirs = mu_law_encode(x), AF.mu_law_encoding(x, 256)
    assert (ours - theirs).abs().max() <= 1  # torchaudio truncates where we round
    q = torch.arange(256)
    torch.testing.assert_close(mu_law_decode(q), AF.mu_law_decoding(q, 256), atol=1e-5, rtol=0)
    assert ours.min() >= 0 and ours.max() <= 255


@pytest.mark.parametrize(
    "sr,channels,fmt", [(44100, 2, "WAV"), (8000, 1, "FLAC"), (22050, 3, "OGG")]
)
def test_load_any_rate_channels_format(tmp_path, sr, channels, fmt):
    t = np.arange(sr) / sr
    data = np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * channels, 1).astype(np.float32)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, data, sr, format=fmt)
    wav = load(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spectrum) * 16000 / len(wav) - 440) < 2


def test_load_errors(tmp_path):
    with pytest.raises(UmtError, match="no such file"):
        load(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("not audio at all")
    with pytest.raises(UmtError, match="cannot read"):
        load(tmp_path / "text.wav")
    bad = np.zeros(100, np.float32)
    bad[3] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(UmtError, match="NaN"):
        load(tmp_path / "nan.wav")


def test_save_is_atomic_and_round_trips(tmp_path):
    wav = (0.3 * np.sin(np.arange(1600) / 10)).astype(np.float32)
    save(tmp_path / "sub" / "out.wav", wav)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.wav"]
    np.testing.assert_allclose(load(tmp_path / "sub" / "out.wav"), wav, atol=1e-4)


def test_resample_and_normalize():
    x = np.random.default_rng(0).standard_normal(44100).astype(np.float32) * 0.01
    assert len(resample(x, 44100, 16000)) == 16000
    y = normalize_loudness(x, -20.0)
    assert abs(20 * np.log10(np.sqrt(np.mean(y**2))) + 20) < 0.5 or np.abs(y).max() <= 0.95
    assert not normalize_loudness(np.zeros(100, np.float32)).any()
