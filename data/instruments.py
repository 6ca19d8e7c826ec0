"""Instrument names mapped to General MIDI programs, and the SoundFonts that render them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from umt.errors import UmtError

# General MIDI program numbers, 0-based as written in MIDI files (GM lists them 1-based).
INSTRUMENTS: dict[str, int] = {
    "piano": 0,
    "bright_piano": 1,
    "harpsichord": 6,
    "celesta": 8,
    "vibraphone": 11,
    "marimba": 12,
    "organ": 19,
    "accordion": 21,
    "harmonica": 22,
    "guitar": 24,
    "steel_guitar": 25,
    "electric_guitar": 27,
    "bass": 32,
    "electric_bass": 33,
    "violin": 40,
    "viola": 41,
    "cello": 42,
    "contrabass": 43,
    "harp": 46,
    "strings": 48,
    "choir": 52,
    "trumpet": 56,
    "trombone": 57,
    "tuba": 58,
    "horn": 60,
    "soprano_sax": 64,
    "alto_sax": 65,
    "tenor_sax": 66,
    "oboe": 68,
    "english_horn": 69,
    "bassoon": 70,
    "clarinet": 71,
    "piccolo": 72,
    "flute": 73,
    "recorder": 74,
    "pan_flute": 75,
    "sitar": 104,
    "banjo": 105,
}


@dataclass(frozen=True)
class SoundFont:
    """One SoundFont file: ``name`` is its short name in manifests and on the command line."""

    name: str
    path: Path


# Short name -> (file installed by the package, Debian package that installs it).
SOUNDFONTS: dict[str, tuple[str, str]] = {
    "fluidr3": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    "timgm6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
    "musescore": (
        "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
        "musescore-general-soundfont-small",
    ),
}


def program_of(name: str) -> int:
    """General MIDI program (0-127) of an instrument name such as ``"violin"``."""
    try:
        return INSTRUMENTS[name]
    except KeyError:
        known = ", ".join(sorted(INSTRUMENTS))
        raise UmtError(f"unknown instrument {name!r}; known: {known}") from None


def parse_instruments(spec: str) -> dict[str, int]:
    """``"piano,violin"`` -> ``{"piano": 0, "violin": 40}``, rejecting unknown or repeated names."""
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    if not names:
        raise UmtError("no instruments given (e.g. --instruments piano,violin)")
    if len(set(names)) != len(names):
        raise UmtError(f"instrument listed twice in {spec!r}")
    return {n: program_of(n) for n in names}


def resolve_soundfonts(spec: str) -> list[SoundFont]:
    """Turn ``"fluidr3,timgm6mb"`` or paths to .sf2/.sf3 files into installed SoundFonts.

    Raises:
        UmtError: a name is unknown, or its file is missing (the message names the apt package).
    """
    fonts: list[SoundFont] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item.lower() in SOUNDFONTS:
            path, package = SOUNDFONTS[item.lower()]
            if not Path(path).is_file():
                raise UmtError(
                    f"SoundFont {item!r} not found at {path}: apt-get install {package}"
                )
            fonts.append(SoundFont(item.lower(), Path(path)))
        elif Path(item).suffix.lower() in (".sf2", ".sf3"):
            if not Path(item).is_file():
                raise UmtError(f"no such SoundFont file: {item}")
            fonts.append(SoundFont(Path(item).stem, Path(item).resolve()))
        else:
            known = ", ".join(SOUNDFONTS)
            raise UmtError(f"unknown SoundFont {item!r}; use one of {known} or a .sf2/.sf3 path")
    if not fonts:
        raise UmtError("no SoundFont given (e.g. --soundfont fluidr3)")
    if len({f.name for f in fonts}) != len(fonts):
        raise UmtError(f"SoundFont listed twice in {spec!r}")
    return fonts
