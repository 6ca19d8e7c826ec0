import numpy as np

from umt.augment import pitch_shift_segment


def _tone(f=440.0, n=16000):
    return (0.5 * np.sin(2 * np.pi * f * np.arange(n) / 16000)).astype(np.float32)


def test_length_kept_and_seeded():
    x = _tone()
    a = pitch_shift_segment(x, np.random.default_rng(3))
    b = pitch_shift_segment(x, np.random.default_rng(3))
    c = pitch_shift_segment(x, np.random.default_rng(4))
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_zero_semitones_is_identity():
    x = _tone()
    np.testing.assert_array_equal(pitch_shift_segment(x, np.random.default_rng(0), 0.0), x)


def test_only_a_sub_segment_changes_and_its_pitch_moves():
    x = _tone()
    rng = np.random.default_rng(1)
    y = pitch_shift_segment(x, rng, 0.5)
    changed = np.flatnonzero(np.abs(y - x) > 1e-6)
    span = changed[-1] - changed[0] + 1
    assert 16000 // 4 - 1 <= span <= 16000 // 2  # a T/4..T/2 window, the rest untouched
    seg = y[changed[0] + 256 : changed[-1] - 256]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 1 << 16))
    f = np.argmax(spectrum) * 16000 / (1 << 16)
    semis = 12 * np.log2(f / 440.0)
    assert 0.02 < abs(semis) <= 0.55
