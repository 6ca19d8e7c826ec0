"""``report.html``: the listening page. Per pair and clip, audio players for the source, the
translation, the ground truth and the baselines beside the clip's spectrograms, and the metrics
tables with the model's wins marked. Static HTML with relative links only, so the output folder
can be zipped or served as it is."""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

from evaluation.report import METRICS
from plumbing.atomic import atomic_text

BASELINES = ("identity", "transcribe_render")
# (label, file in the clip folder, system it belongs to or None) in player order. The identity
# baseline *is* the source, so its player plays source.wav instead of a copy of it.
PLAYERS = (
    ("source", "source.wav", None),
    ("translation (model)", "model.wav", "model"),
    ("ground truth (target instrument, same notes)", "ground_truth.wav", None),
    ("baseline: identity (the untouched source)", "source.wav", "identity"),
    ("baseline: transcribe-then-render", "transcribe_render.wav", "transcribe_render"),
    ("reconstruction (upper bound)", "reconstruction.wav", "reconstruction"),
)
STYLE = """\
body { font-family: sans-serif; margin: 1.5em; max-width: 1250px; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: right; }
tr > :nth-child(-n+2) { text-align: left; }  /* group and system names */
td.win { background: #d8f5d0; font-weight: bold; }
.players { display: grid; grid-template-columns: max-content auto; gap: 0.3em 1em; }
img { max-width: 100%; }
section.clip { border-top: 1px solid #ccc; margin-top: 1.5em; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _href(path: str) -> str:
    """A relative URL of a POSIX path inside the output folder, safe in an attribute."""
    return _esc(quote(path))


def model_wins(by_system: dict[str, dict]) -> set[str]:
    """Metric keys on which the model beats both baselines (a tie is not a win).

    Args:
        by_system: ``{system: {metric key: value or None}}`` for one pair, clip or overall.
    """
    if "model" not in by_system or not all(b in by_system for b in BASELINES):
        return set()
    wins = set()
    for key, _, higher in METRICS:
        mine = by_system["model"].get(key)
        rivals = [by_system[b].get(key) for b in BASELINES]
        if mine is None or any(r is None for r in rivals) or mine != mine:  # None or NaN
            continue
        if (higher and mine > max(rivals)) or (not higher and mine < min(rivals)):
            wins.add(key)
    return wins


def _cell(value: float | None, win: bool) -> str:
    text = "–" if value is None or value != value else f"{value:.3f}"
    return f'<td class="win"><strong>{text}</strong></td>' if win else f"<td>{text}</td>"


def metrics_table(groups: list[tuple[str, dict[str, dict]]], label: str) -> str:
    """A table with one row per (group, system); the model's wins over both baselines marked.

    Args:
        groups: ``(name, {system: metrics})`` pairs, e.g. one per pair and "overall".
        label: Title of the first column ("pair" or "clip").
    """
    head = "".join(f"<th>{_esc(title)}</th>" for _, title, _ in METRICS)
    rows = [f"<tr><th>{_esc(label)}</th><th>system</th>{head}</tr>"]
    for name, by_system in groups:
        wins = model_wins(by_system)
        for system, m in by_system.items():
            cells = "".join(_cell(m.get(k), system == "model" and k in wins)
                            for k, _, _ in METRICS)
            rows.append(f'<tr><td class="name">{_esc(name)}</td>'
                        f'<td class="name">{_esc(system)}</td>{cells}</tr>')
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _legend() -> str:
    items = "".join(f"<li>{_esc(title.rstrip(' ↑↓'))}: "
                    f"{'higher' if higher else 'lower'} is better</li>"
                    for _, title, higher in METRICS)
    return (f"<p>Direction per metric (↑ higher is better, ↓ lower is better):</p><ul>{items}</ul>"
            '<p>A <strong>bold, green</strong> model cell beats both baselines (identity and '
            "transcribe-then-render) on that metric; a tie is not a win.</p>")


def clip_folder(row: dict) -> str:
    """The clip's folder relative to the output folder, as the suite writes it."""
    src, _, tgt = row["pair"].partition(":")
    return f"clips/{src}-to-{tgt}/{row['clip']}"


def _clip_section(out: Path, row: dict) -> str:
    folder = clip_folder(row)
    players = []
    for label, name, system in PLAYERS:
        if system is not None and system not in row["systems"]:
            continue  # e.g. no model: only the baselines were scored
        if (out / folder / name).is_file():
            player = f'<audio controls preload="none" src="{_href(f"{folder}/{name}")}"></audio>'
        else:
            player = "<em>missing</em>"
        players.append(f"<span>{_esc(label)}</span>{player}")
    figure = ""
    if (out / folder / "spectrograms.png").is_file():
        figure = (f'<img src="{_href(f"{folder}/spectrograms.png")}" '
                  f'alt="{_esc("log-mel spectrograms of " + row["clip"])}">')
    kind = "one line (monophonic)" if row["monophonic"] else "full texture"
    return (f'<section class="clip"><h3>{_esc(row["pair"])}: {_esc(row["clip"])}</h3>'
            f"<p>{_esc(row['piece'])} from {row['start']:.2f} s, {row['seconds']:.2f} s, {kind}"
            f'</p><div class="players">{"".join(players)}</div>{figure}'
            f"{metrics_table([(row['clip'], row['systems'])], 'clip')}</section>")


def page(out: Path, report: dict) -> str:
    """The whole page for a report (as :func:`evaluation.report.summarize` builds it).

    Args:
        out: The output folder the page is written to (players link only files that exist).
        report: The report dict (settings, classifier, pairs, overall, clips).
    """
    clf = report["classifier"]
    groups = list(report["pairs"].items()) + [("overall", report["overall"])]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>Translation evaluation: listening page</title>",
             f"<style>\n{STYLE}</style></head><body>",
             "<h1>Translation evaluation</h1>",
             f"<p>Timbre classifier accuracy on real test renders: {clf['test_accuracy']:.3f} "
             f"({len(clf['classes'])} classes: {_esc(', '.join(clf['classes']))}). "
             'Numbers: <a href="report.json">report.json</a>, '
             '<a href="report.md">report.md</a>.</p>',
             "<h2>Metrics per pair</h2>", metrics_table(groups, "pair"), _legend()]
    for pair in report["pairs"]:
        parts.append(f"<h2>{_esc(pair)}</h2>")
        parts += [_clip_section(out, r) for r in report["clips"] if r["pair"] == pair]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(out: Path, report: dict) -> Path:
    """Write ``report.html`` into ``out`` atomically; return its path."""
    path = out / "report.html"
    atomic_text(path, page(out, report))
    return path
