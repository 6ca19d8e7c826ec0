"""A token cache over much of the music21 corpus: ``python -m symbolic corpus``, ``data=corpus``.

A build parses every :class:`Item` (a corpus file, or one tune of an ABC book) in parallel under a
time limit and writes one record per item, atomically, to ``OUT/items/<collection>/``: an
interrupted build keeps what it finished, a rerun parses only the rest, and a parse past the limit
is recorded ``skipped`` (``failed``: it raised; ``empty``: no notes), not retried unless asked.
Each build ends by consolidating the records into ``OUT/tokens.pt`` (duplicates dropped) and
``OUT/manifest.json`` (every item's status and why; each piece's work and split, by work).
Tokens: the one tokeniser and its voice rule (:func:`symbolic.tokens.split_voices`: first track
= melody); a one-part tune's chord symbols become its harmony track. Heavy modules
are imported inside functions: ``symbolic.cli`` imports this module to build its parser.
"""
from __future__ import annotations

import hashlib
import json
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache, partial
from pathlib import Path
from typing import Any

from plumbing.atomic import atomic_text, atomic_torch_save
from plumbing.signals import Interrupted, stop_on_signals
from symbolic.corpus_sources import (
    COLLECTIONS,
    SPLITS,
    Item,
    Loader,
    list_items,
    load_music21,
    shared_tokenizer,
    tokenize,
    vocab_hash,
)


class TimeLimit(BaseException):
    """Raised inside a parse that ran past its limit (a BaseException: music21's broad
    ``except Exception`` clauses must not swallow it)."""


def _alarm(signum: int, frame: Any) -> None:
    raise TimeLimit


def time_limited(fn: Callable[[], Any], seconds: float) -> Any:
    """``fn()`` interrupted by SIGALRM after ``seconds`` (0 = no limit).

    music21 parses in pure Python, so the signal lands between bytecodes. Signals only reach
    the main thread: elsewhere the call runs without a limit.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        return fn()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def process(item: Item, load: Loader = load_music21, timeout: float = 20.0) -> dict:
    """Parses and tokenises one item under the time limit; returns its record (never raises
    for a bad score: the record says ``ok``, ``empty``, ``skipped`` or ``failed`` and why)."""
    start = time.perf_counter()
    rec: dict[str, Any] = {"key": item.key, "collection": item.collection, "path": item.path,
                           "number": item.number, "vocab": vocab_hash(), "meta": {},
                           "tokens": None, "status": "ok", "reason": ""}

    def run() -> tuple[dict, dict[str, list[int]] | None]:
        score, meta = load(item)
        return meta, tokenize(score)

    try:
        rec["meta"], rec["tokens"] = time_limited(run, timeout)
        if rec["tokens"] is None:
            rec["status"], rec["reason"] = "empty", "no notes"
    except TimeLimit:
        rec["status"], rec["reason"] = "skipped", f"parse exceeded the {timeout:g} s limit"
    except Exception as err:  # one odd score must not stop a build of thousands
        rec["status"], rec["reason"] = "failed", f"{type(err).__name__}: {err}"[:300]
    rec["seconds"] = round(time.perf_counter() - start, 3)
    return rec


# ---- the build: records on disk, parallel workers, consolidation ----
def read_records(out: Path) -> dict[str, dict]:
    """Every record of the cache made with the current tokeniser, by item key."""
    import torch

    recs = (torch.load(p, weights_only=True) for p in sorted((out / "items").glob("*/*.pt")))
    return {r["key"]: r for r in recs if r.get("vocab") == vocab_hash()}


def _save_record(out: Path, rec: dict) -> None:
    import torch

    toks = rec["tokens"]  # int16 tensors: the vocabulary has a few hundred entries
    rec = {**rec, "tokens": None if toks is None else
           {k: torch.tensor(v, dtype=torch.int16) for k, v in toks.items()}}
    name = rec["key"].replace("/", "__").replace("#", "@") + ".pt"
    atomic_torch_save(rec, out / "items" / rec["collection"] / name)


def _run(items: list[Item], jobs: int, timeout: float, load: Loader) -> Iterator[dict]:
    """Records of ``items`` as they finish: in this process for one job, else a pool."""
    work = partial(process, load=load, timeout=timeout)
    if jobs <= 1:
        yield from map(work, items)
        return
    import multiprocessing as mp

    # Fresh workers now and then: music21 keeps caches that grow over thousands of scores.
    with mp.get_context("fork").Pool(jobs, _quiet_worker, maxtasksperchild=200) as pool:
        yield from pool.imap_unordered(work, items)


def _quiet_worker() -> None:
    """Ctrl-C reaches the whole process group: the parent stops the build (it saved every
    finished record), so a worker ignores SIGINT and dies of the pool's SIGTERM without a
    traceback (a forked worker would otherwise inherit the parent's recording handler)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def build(out: str | Path, items: list[Item], jobs: int = 1, timeout: float = 20.0,
          retry: bool = False, load: Loader = load_music21, val: float = 0.05,
          test: float = 0.1, log: Callable[[str], None] | None = None) -> dict:
    """Parses the items not yet in the cache ``out``, then consolidates it; returns the manifest.

    Args:
        out: cache folder.
        items: what to parse (see :func:`list_items`).
        jobs: worker processes.
        timeout: seconds per item before it is skipped; 0 = no limit.
        retry: parse again the items recorded as skipped or failed.
        load: item -> (symusic.Score, metadata); tests inject fakes.
        val: fraction of works held out for validation.
        test: fraction of works held out for test.
        log: progress lines (default: stderr).
    """
    out = Path(out)
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    done = read_records(out)
    redo = ("skipped", "failed") if retry else ()
    todo = [it for it in items if it.key not in done or done[it.key]["status"] in redo]
    log(f"{len(items) - len(todo)} of {len(items)} items already in {out}; parsing {len(todo)}")
    start, counts = time.time(), Counter()
    with stop_on_signals() as stop:
        for i, rec in enumerate(_run(todo, jobs, timeout, load), 1):
            _save_record(out, rec)
            counts[rec["status"]] += 1
            if rec["status"] != "ok" or i % 50 == 0 or i == len(todo):
                log(f"[{i}/{len(todo)}] {time.time() - start:.0f}s {dict(counts)} "
                    f"{rec['key']}: {rec['status']} {rec['reason']}".rstrip())
            if stop.signum:  # leaving the loop ends the pool (the items under way are lost)
                raise Interrupted(stop.signum, f"interrupted after {i} of {len(todo)} items "
                                  f"({stop.name}): each is saved in {out}; rerun the same "
                                  "command to resume")
    return consolidate(out, val, test)


def _norm(title: str) -> str:
    return " ".join(re.findall(r"\w+", title.casefold()))


@cache
def _chorale_titles() -> dict[str, str]:
    """BWV number -> chorale tune title (music21's Riemenschneider/BWV list)."""
    from music21.corpus.chorales import ChoraleListRKBWV

    return {bwv: v["title"] for bwv, v in ChoraleListRKBWV().byBWV.items()}


def work_labels(rec: dict, chorale_titles: dict[str, str]) -> list[str]:
    """Labels naming the work of a record; pieces sharing a label are one work.

    Bach: the movement (its versions ``-a``, ``-sc``, ... share it) and the chorale tune, since a
    tune's harmonisations are the real near-duplicates. A tune of an ABC book: its title (folk
    variants share titles, across books too). A Palestrina mass movement: the mass. Else the
    file, or its folder when a work's movements are files of one folder (beethoven/opus59no1).
    """
    path, meta = rec["path"], rec["meta"]
    stem = path.rsplit(".", 1)[0]
    if rec["collection"] == "bach":
        m = re.match(r"bach/bwv(\d+(?:\.\d+)?)", path)
        if m is None:
            return [f"bach:{stem}"]
        title = chorale_titles.get(m.group(1))
        return [f"bach:bwv{m.group(1)}"] + ([f"tune:{_norm(title)}"] if title else [])
    if rec["number"] is not None:
        return [f"tune:{_norm(meta.get('title') or rec['key'])}"]
    if meta.get("parent_title"):
        return [f"{rec['collection']}:{_norm(meta['parent_title'])}"]
    return [f"{rec['collection']}:" + "/".join(stem.split("/")[:2])]


def _dedup_key(ids: Any, table: Any) -> str:
    """Hash of a token sequence up to transposition (pitches relative to the first one)."""
    from symbolic.tokens import K_PITCH

    ids = ids.long().numpy().copy()
    is_pitch = table.kind[ids] == K_PITCH
    if is_pitch.any():
        pitch = table.value[ids[is_pitch]]
        ids[is_pitch] = 10_000 + pitch - pitch[0]
    return hashlib.md5(ids.tobytes()).hexdigest()


def _works(recs: list[dict], dup_of: dict[str, str]) -> dict[str, str]:
    """Work id of every record: connected labels (union-find), duplicates joined to the kept
    piece; the id is the smallest label of the component, so it does not depend on order."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    titles = _chorale_titles() if any(r["collection"] == "bach" for r in recs) else {}
    for r in recs:
        for label in [*work_labels(r, titles), "key:" + dup_of.get(r["key"], r["key"])]:
            parent[find(label)] = find("key:" + r["key"])
    smallest: dict[str, str] = {}
    for label in parent:
        if not label.startswith("key:"):
            root = find(label)
            smallest[root] = min(smallest.get(root, label), label)
    return {r["key"]: smallest.get(find("key:" + r["key"]), "key:" + r["key"]) for r in recs}


def split_works(recs: list[dict], works: dict[str, str], val: float, test: float
                ) -> dict[str, str]:
    """Split of every work: a hash of its id, held out further (test > val > train) when one of
    its Bach pieces is a val/test chorale of the ``chorales`` manifest, so a corpus-trained
    model is still evaluated on unseen chorales by ``symbolic eval``."""
    from symbolic.data import make_manifest

    rank = {w: SPLITS.index(s) for s, ws in make_manifest(sorted(set(works.values())), val,
                                                          test).items() for w in ws}
    bach = {r["path"].rsplit(".", 1)[0].replace("/", "_"): r["key"] for r in recs
            if r["collection"] == "bach"}
    for s, names in make_manifest(sorted(bach), val, test).items():
        for name in names:
            w = works[bach[name]]
            rank[w] = max(rank[w], SPLITS.index(s))
    return {w: SPLITS[r] for w, r in rank.items()}


def consolidate(out: Path, val: float = 0.05, test: float = 0.1) -> dict:
    """Writes ``tokens.pt`` (kept pieces) and ``manifest.json`` from the records; returns it."""
    from symbolic.tokens import token_table

    table = token_table(shared_tokenizer())
    records = read_records(out)
    ok = [records[k] for k in sorted(records) if records[k]["status"] == "ok"]
    first: dict[str, str] = {}
    dup_of = {}
    for r in ok:
        h = _dedup_key(r["tokens"]["full"], table)
        if first.setdefault(h, r["key"]) != r["key"]:
            dup_of[r["key"]] = first[h]
    works = _works(ok, dup_of)
    split = split_works(ok, works, val, test)
    kept = [r for r in ok if r["key"] not in dup_of]
    atomic_torch_save({r["key"]: r["tokens"] for r in kept}, out / "tokens.pt")
    manifest = {
        "format": 1, "vocab": vocab_hash(), "val_fraction": val, "test_fraction": test,
        "collections": summarize(records.values(), works, dup_of),
        "split": {s: [r["key"] for r in kept if split[works[r["key"]]] == s] for s in SPLITS},
        "works": {r["key"]: works[r["key"]] for r in kept},
        "items": {k: {"collection": r["collection"], "status": r["status"], "reason": r["reason"],
                      "seconds": r["seconds"], **({"duplicate_of": dup_of[k]} if k in dup_of
                                                  else {})} for k, r in sorted(records.items())},
    }
    atomic_text(out / "manifest.json", json.dumps(manifest, indent=1, ensure_ascii=False))
    return manifest


COLUMNS = ("items", "works", "pieces", "tokens", "duplicates", "skipped", "failed", "empty",
           "seconds")


def summarize(records: Any, works: dict[str, str], dup_of: dict[str, str]) -> dict[str, dict]:
    """Per collection: items, works, kept pieces and their tokens, duplicates, the others."""
    rows: dict[str, Counter] = {}
    seen: dict[str, set] = {}
    for r in records:
        row = rows.setdefault(r["collection"], Counter(dict.fromkeys(COLUMNS, 0)))
        row["items"] += 1
        row["seconds"] += r["seconds"]
        kind = "pieces" if r["status"] == "ok" and r["key"] not in dup_of else (
            "duplicates" if r["status"] == "ok" else r["status"])
        row[kind] += 1
        row["tokens"] += len(r["tokens"]["full"]) if kind == "pieces" else 0
        seen.setdefault(r["collection"], set()).add(works.get(r["key"]))
    for name, row in rows.items():
        row["works"] = len(seen[name] - {None})
        row["seconds"] = round(row["seconds"], 1)
    return {name: dict(rows[name]) for name in sorted(rows)}


def format_summary(manifest: dict) -> str:
    """The summary table of a manifest: a row per collection, the total, the split."""
    rows = manifest["collections"]
    total = {c: round(sum(r[c] for r in rows.values()), 1) for c in COLUMNS}
    total["works"] = len(set(manifest["works"].values()))  # a work may span collections
    lines = ["| collection | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in [*rows.items(), ("total", total)]:
        lines.append(f"| {name} | " + " | ".join(str(row[c]) for c in COLUMNS) + " |")
    n = {s: len(v) for s, v in manifest["split"].items()}
    return "\n".join([*lines, f"pieces by split: train {n['train']} / val {n['val']} / "
                               f"test {n['test']}"])


# ---- training and the command line ----
def add_parser(sub: Any) -> None:
    """Registers ``corpus`` on the sub-parsers of ``python -m symbolic``."""
    p = sub.add_parser("corpus", help="build the token cache of the music21 corpus "
                                      "(train on it with data=corpus)")
    p.add_argument("--out", default="cache/symbolic/corpus", help="cache folder")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per score; 0: none")
    p.add_argument("--collections", default="", help=f"comma list of {','.join(COLLECTIONS)} "
                                                      "(default: all)")
    p.add_argument("--limit", type=int, default=0, help="first N items, from every collection")
    p.add_argument("--retry", action="store_true", help="parse skipped and failed items again")


def run_cli(args: Any) -> str:
    """Builds (or resumes) the cache of ``args``; returns the summary table."""
    names = [n.strip() for n in args.collections.split(",") if n.strip()]
    items = list_items(names, args.limit)
    return format_summary(build(args.out, items, args.jobs, args.timeout, args.retry))
