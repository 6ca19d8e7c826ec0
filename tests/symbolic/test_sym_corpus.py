"""The corpus token cache: time limits, resume, the split by work, a real round trip, training."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time
from fractions import Fraction
from functools import partial

import numpy as np
import pytest
import symusic

from plumbing.errors import UserError
from plumbing.signals import Interrupted
from symbolic.config import DataConfig
from symbolic.corpus import (
    Item,
    TimeLimit,
    build,
    format_summary,
    load_music21,
    time_limited,
)
from symbolic.data import TaskBatcher, load_corpus, make_manifest
from symbolic.tokens import K_PITCH, decode, merge_tracks


def fake_load(item: Item) -> tuple[symusic.Score, dict]:
    """A tiny two-voice (or, for ``essen``, one-voice) score fixed by the item; no music21.

    ``slow`` paths never finish in time, ``broken`` ones raise, ``dup/`` ones are one piece in
    different keys, and the title (the work of a tune) is shared by numbers 20 apart.
    """
    if "slow" in item.path:
        time.sleep(30)
    if "broken" in item.path:
        raise ValueError("bad score")
    content = "dup" if item.path.startswith("dup/") else item.key
    rng = random.Random(int(hashlib.md5(content.encode()).hexdigest()[:8], 16))
    shift = len(item.path) % 5 if content == "dup" else 0
    score = symusic.Score(480)
    voices = [0] if item.collection == "essen" else [0, -12]
    for low in voices:
        track = symusic.Track("voice")
        for i in range(16):
            track.notes.append(symusic.Note(i * 480, 480, 60 + low + shift + rng.randrange(12), 80))
        score.tracks.append(track)
    return score, {"title": f"song {(item.number or 0) % 20}", "parent_title": None}


def test_time_limit_interrupts_a_slow_call():
    start = time.perf_counter()
    with pytest.raises(TimeLimit):
        time_limited(lambda: time.sleep(5), 0.2)
    assert time.perf_counter() - start < 2
    assert time_limited(lambda: 7, 0.2) == 7


def test_slow_parse_is_skipped_recorded_and_not_retried(tmp_path):
    items = [Item("folk", "a.abc", 1), Item("folk", "slow.abc", 1), Item("folk", "broken.abc", 1)]
    start = time.perf_counter()
    manifest = build(tmp_path, items, jobs=2, timeout=1.0, load=fake_load, log=lambda _: None)
    assert time.perf_counter() - start < 20  # the 30 s parse was cut at 1 s
    status = {k: (v["status"], v["reason"]) for k, v in manifest["items"].items()}
    assert status["a.abc#1"] == ("ok", "")
    assert status["slow.abc#1"] == ("skipped", "parse exceeded the 1 s limit")
    assert status["broken.abc#1"] == ("failed", "ValueError: bad score")
    row = manifest["collections"]["folk"]
    assert (row["items"], row["pieces"], row["skipped"], row["failed"]) == (3, 1, 1, 1)
    assert "| folk | 3 | 1 | 1 |" in format_summary(manifest)

    calls = []

    def counting(item):
        calls.append(item.key)
        return fake_load(Item(item.collection, "fast.abc", item.number))

    build(tmp_path, items, timeout=1.0, load=counting, log=lambda _: None)
    assert calls == []  # a resume does not retry what was skipped or failed ...
    manifest = build(tmp_path, items, timeout=1.0, retry=True, load=counting, log=lambda _: None)
    assert sorted(calls) == ["broken.abc#1", "slow.abc#1"]  # ... unless asked
    assert {v["status"] for v in manifest["items"].values()} == {"ok"}


def test_interrupted_build_resumes_with_what_is_left(tmp_path):
    items = [Item("folk", "book.abc", n) for n in range(1, 7)]
    calls = []

    def dies_at_fourth(item):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the build is killed while parsing the fourth item
        calls.append(item.key)
        return fake_load(item)

    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, items, load=dies_at_fourth, log=lambda _: None)
    assert len(list((tmp_path / "items").glob("*/*.pt"))) == 3
    (tmp_path / "items" / "folk" / ".book.abc@4.pt.99.tmp").write_bytes(b"half")  # a killed write

    calls.clear()

    def recording(item):
        calls.append(item.key)
        return fake_load(item)

    manifest = build(tmp_path, items, load=recording, log=lambda _: None)
    assert calls == ["book.abc#4", "book.abc#5", "book.abc#6"]
    assert sum(len(v) for v in manifest["split"].values()) == 6


def ctrl_c_at_second(item: Item, main: int) -> tuple[symusic.Score, dict]:
    """fake_load that sends the build's process ``main`` a Ctrl-C at item 2 (from a worker too)."""
    if item.number == 2:
        os.kill(main, signal.SIGINT)
    elif item.number > 2:
        time.sleep(0.2)  # the rest is still under way when the build stops
    return fake_load(item)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_signal_stops_the_build_cleanly_and_a_rerun_finishes_it(tmp_path, jobs):
    items = [Item("folk", "book.abc", n) for n in range(1, 9)]
    load = partial(ctrl_c_at_second, main=os.getpid())
    with pytest.raises(Interrupted) as stop:
        build(tmp_path, items, jobs=jobs, load=load, log=lambda _: None)
    assert stop.value.exit_code == 130 and "rerun the same command to resume" in str(stop.value)
    saved = len(list((tmp_path / "items").glob("*/*.pt")))
    assert 1 <= saved < len(items)  # stopped early, keeping what finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    manifest = build(tmp_path, items, jobs=jobs, load=fake_load, log=lambda _: None)
    assert sum(len(v) for v in manifest["split"].values()) == len(items)


def _split_of(manifest: dict) -> dict[str, str]:
    return {k: s for s, keys in manifest["split"].items() for k in keys}


def test_split_by_work_is_deterministic_and_keeps_works_whole(tmp_path):
    tunes = [Item("folk", "book.abc", n) for n in range(60)]  # 20 works of 3 versions
    bach = [Item("bach", f"bach/bwv{k}.6.mxl") for k in range(1, 40)]
    dups = [Item("other", "dup/a.xml"), Item("other", "dup/bb.xml")]
    items = tunes + bach + dups
    kw = {"load": fake_load, "val": 0.2, "test": 0.2, "log": lambda _: None}
    a = build(tmp_path / "a", items, **kw)
    b = build(tmp_path / "b", list(reversed(items)), jobs=2, **kw)
    assert a["split"] == b["split"] and a["works"] == b["works"]
    split = _split_of(a)
    assert all(len(keys) > 0 for keys in a["split"].values())
    by_work: dict[str, set[str]] = {}
    for key, work in a["works"].items():
        by_work.setdefault(work, set()).add(split[key])
    assert all(len(s) == 1 for s in by_work.values())  # no work is split
    assert len({a["works"][t.key] for t in tunes}) == 20
    # The same piece in another key is kept once, and the copy says of which.
    assert a["items"]["dup/bb.xml"]["duplicate_of"] == "dup/a.xml" and "dup/bb.xml" not in split
    # A chorale the `chorales` manifest holds out stays held out here.
    names = {f"bach_bwv{k}.6": f"bach/bwv{k}.6.mxl" for k in range(1, 40)}
    held = make_manifest(sorted(names), 0.2, 0.2)["test"]
    assert held and all(split[names[n]] == "test" for n in held)


REAL = [Item("bach", "bach/bwv66.6.mxl"), Item("essen", "essenFolksong/altdeu10.abc", 3),
        Item("folk", "nottingham-dataset/reelsa-c.abc", 80)]


def _notes(score: symusic.Score) -> list[tuple[Fraction, int, Fraction]]:
    q = score.ticks_per_quarter
    return sorted((Fraction(n.time, q), n.pitch, Fraction(n.duration, q))
                  for t in score.tracks for n in t.notes)


def test_real_build_round_trips_through_the_detokeniser(tmp_path, tokenizer, table):
    manifest = build(tmp_path, REAL, timeout=120, val=0.0, test=0.0, log=lambda _: None)
    assert {v["status"] for v in manifest["items"].values()} == {"ok"}
    pieces = {p.name: p for p in load_corpus(DataConfig(source="corpus", root=str(tmp_path)))
              ["train"]}
    assert sorted(pieces) == sorted(it.key for it in REAL)
    for item in REAL:
        score, _ = load_music21(item)
        p = pieces[item.key]
        expected = tokenizer.preprocess_score(merge_tracks(score))
        assert _notes(decode(tokenizer, p.full.tolist())) == _notes(expected)
        n = {k: int((table.kind[getattr(p, k)] == K_PITCH).sum()) for k in ("melody", "harmony")}
        assert n["melody"] + n["harmony"] == int((table.kind[p.full] == K_PITCH).sum())
        assert (n["harmony"] > 0) == (item.collection != "essen")  # the reel's chords realised
    from music21 import corpus

    soprano = corpus.parse("bach/bwv66.6").parts[0]
    melody = decode(tokenizer, pieces["bach/bwv66.6.mxl"].melody.tolist())
    assert {n.pitch for n in melody.tracks[0].notes} == {p.midi for p in soprano.pitches}
    batcher = TaskBatcher(list(pieces.values()), table, DataConfig(), 64, 32, augment=False)
    assert {p.name for p in batcher.harmonised} == {REAL[0].key, REAL[2].key}


def test_training_reads_the_corpus_cache(tmp_path, tiny_overrides):
    from symbolic.checkpoint import read_export
    from symbolic.train import compose_config, train

    items = ([Item("palestrina", f"p/{i}.krn") for i in range(8)]
             + [Item("essen", "e.abc", n) for n in range(8)])
    out = tmp_path / "corpus"
    build(out, items, load=fake_load, val=0.3, test=0.3, log=lambda _: None)
    cfg = compose_config([*tiny_overrides(tmp_path, tmp_path / "run", 2), "data=corpus",
                          f"data.root={out}"])
    assert cfg.data.source == "corpus"
    export = read_export(train(cfg))
    assert export["meta"]["data"] == "corpus"


def test_eval_reads_the_corpus_and_harmonises_only_its_chorales(tmp_path, tiny_export):
    import json

    from symbolic.evaluate import evaluate, format_table

    items = ([Item("bach", f"bach/c{i}.mxl") for i in range(10)]
             + [Item("essen", "e.abc", n) for n in range(10)])
    build(tmp_path / "corpus", items, load=fake_load, val=0.3, test=0.3, log=lambda _: None)
    test = json.loads((tmp_path / "corpus" / "manifest.json").read_text())["split"]["test"]
    chorales = [n for n in test if n.startswith("bach/")]
    assert chorales and len(chorales) < len(test)
    report = evaluate(str(tiny_export), "corpus", str(tmp_path), pieces=0, prompts=2)
    assert report["test_pieces"] == len(test)
    assert report["harmony_pieces"] == len(chorales)
    assert report["chords"]["beats"] == report["hmm"]["beats"] > 0
    assert f"harmony on {len(chorales)} of them" in format_table(report)
    val = evaluate(str(tiny_export), "corpus", str(tmp_path), pieces=1, prompts=1, split="val",
                   harmony_temp=0.3, continue_temp=1.0)
    assert val["split"] == "val" and val["harmony_pieces"] <= 1 and val["harmony_temp"] == 0.3
    assert val["continue_temp"] == 1.0
    assert "held-out val split" in format_table(val)


def _piece(tokenizer, harmony_bars: list[int], n_bars: int = 4):
    """A 4/4 piece of ``n_bars`` melody bars whose harmony sounds in ``harmony_bars``."""
    from symbolic.data import Piece
    from symbolic.tokens import encode

    voices = []
    for bars, pitch in ((range(n_bars), 72), (harmony_bars, 48)):
        score = symusic.Score(480)
        score.tracks.append(symusic.Track("voice"))
        score.tracks[0].notes.extend(symusic.Note(b * 1920, 480, pitch, 80) for b in bars)
        voices.append(score)
    full = symusic.Score(480)
    full.tracks.extend([voices[0].tracks[0], voices[1].tracks[0]])
    return Piece("p", *(np.asarray(encode(tokenizer, s)) for s in (full, *voices)))


def test_seq2seq_pool_leaves_out_harmonies_that_are_mostly_empty(tokenizer, table):
    from symbolic.data import harmony_fill

    # a folk tune with a double stop in its first bar: its harmony tokens hold that bar only
    sparse, half, full = (_piece(tokenizer, bars) for bars in ([0], [0, 2], [0, 1, 2, 3]))
    assert [harmony_fill(p, table) for p in (sparse, half, full)] == [0.25, 0.5, 1.0]
    assert harmony_fill(_piece(tokenizer, []), table) == 0.0
    batcher = TaskBatcher([sparse, half, full], table, DataConfig(), 64, 32, augment=False)
    assert [p is q for p, q in zip(batcher.harmonised, [half, full], strict=True)] == [True, True]
    loose = TaskBatcher([sparse, full], table, DataConfig(min_harmony_fill=0.0), 64, 32,
                        augment=False)
    assert len(loose.harmonised) == 2


def test_seq2seq_weights_draw_collections_in_proportion(tokenizer, table):
    import dataclasses

    from symbolic.data import collection_weights

    one = _piece(tokenizer, [0, 1, 2, 3])
    pieces = [dataclasses.replace(one, name=n, full=one.full.copy())
              for n in ("bach/a", "bach/b", "pal/c", "folk/d")]
    p = collection_weights(pieces, {"bach": 3.0, "folk": 0.0})
    assert p.tolist() == pytest.approx([3 / 7, 3 / 7, 1 / 7, 0.0])
    assert collection_weights(pieces, {}) is None
    cfg = DataConfig(seq2seq_weights={"bach": 3.0, "folk": 0.0})
    batcher = TaskBatcher(pieces, table, cfg, 64, 32, augment=False)
    drawn = [batcher._piece(batcher.harmonised, batcher.harmonised_p)[0] for _ in range(700)]
    counts = {n: sum(d is x.full for d in drawn) for n, x in zip("abcd", pieces, strict=True)}
    assert counts["d"] == 0 and 250 < counts["a"] < 350 and 60 < counts["c"] < 140
    for bad in ({"bach": -1.0}, {"bach": 0.0, "pal": 0.0, "folk": 0.0}, {"bahc": 6.0}):
        with pytest.raises(UserError, match="seq2seq_weights"):
            collection_weights(pieces, bad)


def test_prompts_are_spread_over_a_split_sorted_by_collection():
    from symbolic.evaluate import spread

    names = [f"a/{i}" for i in range(6)] + [f"b/{i}" for i in range(3)] + ["c/0"]
    assert spread(names, 3) == ["a/0", "a/3", "b/0"]
    assert spread(names, 5) == ["a/0", "a/2", "a/4", "b/0", "b/2"]
    assert spread(names, 0) == spread(names, 99) == names
