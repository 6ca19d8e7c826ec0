"""Hear and see a generation: its MIDI rendered to a wav, input and output drawn as piano rolls.

Rendering calls ``data.render`` (the same fluidsynth call the audio datasets are built with) and
``data.instruments`` (SoundFont names and install hints); they, and matplotlib, are imported only
when a command asks for a wav or a picture, so composing alone never loads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import symusic

from plumbing.atomic import atomic_path
from plumbing.errors import UserError

if TYPE_CHECKING:  # imported for real only when rendering (it loads umt.audio and torch)
    from data.instruments import SoundFont

# What data.synth's --soundfont defaults to (a test keeps the two equal).
DEFAULT_SOUNDFONT = "fluidr3"
# Every part is played on one General MIDI program: the model writes no instruments.
PIANO = 0
# Piano-roll colours (Paul Tol's bright scheme: distinct for colour-blind readers too).
INPUT_COLOR = "#4477AA"
KEPT_COLOR = "#4477AA"  # the same blue as the input: kept notes read as "the input, still there"
NEW_COLOR = "#EE6677"
# A note of the output is "kept" when the input has one of the same pitch whose onset and duration
# differ by less than half a tokenizer step (1/8 quarter up to 4 quarters, 1/4 beyond): input
# notes off that grid still count as kept, while any step the model changes counts as new.
ONSET_TOL = 0.07
DUR_TOL_SHORT, DUR_TOL_LONG, LONG = 0.07, 0.13, 4.0


def check_target(path: str | Path) -> Path:
    """``path`` as a Path if a file can be written there; else a one-line ``UserError``.

    Checked before generating, so a typo in a folder name costs no model run.
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise UserError(f"cannot write {path}: the folder {folder} {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: permission denied")
    return path


def resolve_soundfont(spec: str | None) -> SoundFont:
    """The one SoundFont named by ``spec`` (a short name or a .sf2/.sf3 path; None: default).

    Raises:
        UserError: fluidsynth is missing, or the SoundFont is unknown, missing or several.
    """
    from data.instruments import resolve_soundfonts
    from data.render import fluidsynth_path

    fluidsynth_path()  # the install hint comes before any SoundFont complaint
    fonts = resolve_soundfonts(spec or DEFAULT_SOUNDFONT)
    if len(fonts) != 1:
        raise UserError(f"--soundfont takes one SoundFont, got {len(fonts)}")
    # fluidsynth takes a file it cannot parse for "not a SoundFont", loads its own default one
    # and exits 0: the wav would sound fine but come from another SoundFont.
    try:
        with open(fonts[0].path, "rb") as f:
            head = f.read(12)
    except OSError as err:
        raise UserError(f"cannot read SoundFont {fonts[0].path}: {err.strerror}") from None
    if head[:4] != b"RIFF" or head[8:] != b"sfbk":
        raise UserError(f"{fonts[0].path} is not a SoundFont (no RIFF sfbk header)")
    return fonts[0]


def pitched_tracks(score: symusic.Score) -> list[symusic.Track]:
    """The non-drum tracks: drums have no pitch to draw, and the model writes none."""
    return [t for t in score.tracks if not t.is_drum]


def render_wav(score: symusic.Score, path: str | Path, soundfont: SoundFont) -> float:
    """Plays every pitched note of ``score`` on piano and writes a 16 kHz mono wav atomically.

    The wav lasts until the last note ends plus the sound's release (the silent end below
    -60 dB of the peak is cut, by ``data.render.render``); loudness is normalised as in the
    audio datasets.

    Args:
        score: The MIDI to hear (any tick resolution; tempo changes are followed).
        path: Destination ``.wav``.
        soundfont: The SoundFont (see :func:`resolve_soundfont`).

    Returns:
        The wav's length in seconds.

    Raises:
        UserError: no notes, fluidsynth fails or plays silence, or the file cannot be written.
    """
    from data.render import NoteEvent, render_wav

    sec = score.to("second")
    notes = [NoteEvent(n.time, n.end, n.pitch, n.velocity)
             for t in pitched_tracks(sec) for n in t.notes]
    if not notes:
        raise UserError("the output has no notes to render")
    return render_wav(sorted(notes), soundfont, PIANO, path, "the output")


def note_array(score: symusic.Score) -> np.ndarray:
    """(N, 3) float array of onset, duration (both in quarter notes) and pitch of every note."""
    rows = []
    for t in pitched_tracks(score):
        a = t.notes.numpy()
        rows.append(np.stack([a["time"], a["duration"], a["pitch"]], 1).astype(np.float64))
    out = np.concatenate(rows) if rows else np.zeros((0, 3))
    out[:, :2] /= score.ticks_per_quarter  # ticks -> quarters: input and output resolutions differ
    return out


def kept_mask(given: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(M,) bool: which notes of ``out`` the input ``given`` already has (see ``ONSET_TOL``).

    Matching is one to one (each input note is claimed once), so a new voice doubling an
    input note in unison counts as new, and ``kept.sum() <= len(given)``.

    Args:
        given: (N, 3) notes of the input, as :func:`note_array` makes them.
        out: (M, 3) notes of the output.
    """
    kept = np.zeros(len(out), dtype=bool)
    for pitch in np.unique(out[:, 2]):
        o, g = np.flatnonzero(out[:, 2] == pitch), given[given[:, 2] == pitch]
        if not len(g):
            continue
        d_on = np.abs(out[o, None, 0] - g[None, :, 0])  # (m, n) every output x input note
        d_dur = np.abs(out[o, None, 1] - g[None, :, 1])
        tol = np.where(g[None, :, 1] < LONG, DUR_TOL_SHORT, DUR_TOL_LONG)
        match = (d_on < ONSET_TOL) & (d_dur < tol)
        free = np.ones(len(g), dtype=bool)
        for row, i in enumerate(o):  # greedy in output order: few notes share a pitch
            hit = np.flatnonzero(match[row] & free)
            if hit.size:
                kept[i], free[hit[0]] = True, False
    return kept


def _bars(ax, notes: np.ndarray, color: str, label: str | None = None) -> None:
    """One horizontal bar per note (onset, duration, pitch rows)."""
    if len(notes):
        ax.barh(notes[:, 2], notes[:, 1], left=notes[:, 0], height=0.8, color=color,
                linewidth=0, label=label)


def bar_quarters(score: symusic.Score) -> float:
    """Length of a bar of the first time signature, in quarters (4 without one)."""
    if not len(score.time_signatures):
        return 4.0
    sig = score.time_signatures[0]
    return 4.0 * sig.numerator / sig.denominator


def plot_piano_roll(given: symusic.Score, out: symusic.Score, path: str | Path,
                    titles: tuple[str, str] = ("input", "output")) -> tuple[int, int]:
    """Writes a PNG: the input's piano roll above, the output's below, on the same axes.

    Output notes the input already had are drawn in the input's blue, new ones in red; time is
    in quarter notes (grid lines at bar starts), pitch on y. Written atomically.

    Args:
        given: The input (what the model was given).
        out: The generated score.
        path: Destination ``.png``.
        titles: Panel titles; the output's gets the kept/new counts appended.

    Returns:
        (kept, new): how many output notes are the input's, how many are new.

    Raises:
        UserError: the file cannot be written (a full disk, a read-only folder...).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MultipleLocator

    a, b = note_array(given), note_array(out)
    kept = kept_mask(a, b)
    both = np.concatenate([a, b])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), dpi=100, sharex=True, sharey=True)
    _bars(top, a, INPUT_COLOR)
    # Only the categories present get a legend entry, so an unchanged output shows no red.
    _bars(bottom, b[kept], KEPT_COLOR, "kept from the input" if kept.any() else None)
    _bars(bottom, b[~kept], NEW_COLOR, "new" if (~kept).any() else None)
    top.set_title(f"{titles[0]} ({len(a)} notes)")
    bottom.set_title(f"{titles[1]} ({len(b)} notes: {int(kept.sum())} kept, "
                     f"{int((~kept).sum())} new)")
    if len(both):
        top.set_xlim(0, float((both[:, 0] + both[:, 1]).max()))
        top.set_ylim(both[:, 2].min() - 1.5, both[:, 2].max() + 1.5)
    for ax in (top, bottom):
        ax.xaxis.set_major_locator(MultipleLocator(bar_quarters(given)))
        ax.grid(axis="x", color="0.85", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_ylabel("MIDI pitch (60 = C4)")
    if len(b):
        # Above the panel, right of its title: never on top of a note.
        bottom.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8,
                      frameon=False, borderaxespad=0.2)
    bottom.set_xlabel("time (quarter notes; grid: bars)")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return int(kept.sum()), int((~kept).sum())


@dataclass
class Views:
    """What a generating command should also write: a wav, a piano roll, or both.

    Build it with :meth:`prepare` before generating (every check that can fail runs there),
    call :meth:`write` once the output exists.
    """

    wav: Path | None = None
    png: Path | None = None
    soundfont: SoundFont | None = None  # set when ``wav`` is

    @classmethod
    def prepare(cls, midi: str | Path, wav: str | Path | None = None,
                png: str | Path | None = None, soundfont: str | None = None) -> Views:
        """Checks the targets (writable, distinct from the MIDI and each other), fluidsynth
        and the SoundFont, so that nothing fails after the model has run.

        Raises:
            UserError: one line saying what is wrong.
        """
        if soundfont is not None and wav is None:
            raise UserError("--soundfont is only used with --render OUT.wav")
        names = [Path(p).resolve() for p in (midi, wav, png) if p is not None]
        if len(set(names)) != len(names):
            raise UserError("-o, --render and --plot must name different files")
        return cls(check_target(wav) if wav else None, check_target(png) if png else None,
                   resolve_soundfont(soundfont) if wav else None)

    def write(self, given: symusic.Score, out: symusic.Score,
              titles: tuple[str, str] = ("input", "output")) -> str:
        """Writes the wav and/or the PNG; returns the summary to append to the command's line."""
        parts = []
        if self.wav:
            secs = render_wav(out, self.wav, self.soundfont)
            parts.append(f"rendered {self.wav} ({secs:.1f} s, 16 kHz, {self.soundfont.name})")
        if self.png:
            kept, new = plot_piano_roll(given, out, self.png, titles)
            parts.append(f"plotted {self.png} ({kept} kept, {new} new notes)")
        return "".join(f"; {p}" for p in parts)
