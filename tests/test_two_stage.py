"""Two-stage runs in which stage 2 really trains: `gradual` and `gradual-mk` with LoRA, and `gradual`
with full fine-tuning (train.lora: false), end to end on a tiny model built for it.

The conftest tiny model knows nothing (no MaybeKnown item, so stage 1 has nothing to train), and
teaching a tiny random model per-subject facts is slow. The fixture here instead learns one
behaviour per *relation* (question wording), which a two-layer model picks up in a few hundred
small steps because every token of a prompt tells it which relation it is in:

    continent  "Which continent is X on?"       Europe if an exemplar answered Europe, else Asia
    location   "Where is X located?"            Asia 70%, Europe 30%, whatever the exemplars
    home       "What continent is home to X?"   Asia

Train items: 6 `continent` and 6 `location` items answer Europe, 2 `location` items Africa (an
answer the model never gives), 4 `home` items Asia. With the probe settings below (exact
estimator, 4 prompts of 2 exemplars, exemplar seed 0) the base categories are:

    continent  MaybeKnown: the 4 exemplar sets drawn from its 4 dev items (one answers Europe) mix
               sets with and without a Europe exemplar (pure Python RNG: the same on every machine)
    location   WeaklyKnown (the Africa items: Unknown): greedy is always Asia, and a T=0.5 sample
               is Europe a few % of the time
    home       HighlyKnown

These hold by construction, not by luck: the builder trains until every train item, under every
ordered exemplar pair of its relation's dev pool, has the rule's answer as argmax by a logit margin
of 1.5 (location: Asia ahead of Europe by 0.4 to 1.6, so Europe stays within sampling reach; Africa
below log-prob -6), followed by the newline, and raises otherwise. Stage 1 then trains the
`continent` items (Europe), and the model carries "Europe" over to the `location` items, which
move up; they are what stage 2 trains on, with replay of the `home` items. With these stage
settings every Europe `location` item moved up for lr from 0.005 to 0.02 (LoRA) and 0.003 to 0.01
(full fine-tuning), and across fixture seeds; the assertions on training outcomes still only ask
for >= 1 where the run gives 6.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest


EUROPE, ASIA = "Europe", "Asia"
RELATIONS = {  # relation -> question template
    "continent": "Which continent is {} on?",
    "location": "Where is {} located?",
    "home": "What continent is home to {}?",
}
AFRICA = "Africa"  # an answer the model never gives: items with it stay Unknown
TRAIN_PLAN = {"continent": [EUROPE] * 6, "location": [EUROPE] * 6 + [AFRICA] * 2, "home": [ASIA] * 4}
DEV_POOL = {"continent": [("Ardo", EUROPE), ("Belo", ASIA), ("Cira", ASIA), ("Dumo", ASIA)],
            "location": [("Enko", ASIA), ("Faro", ASIA), ("Gilo", ASIA)],
            "home": [("Hura", ASIA), ("Ivo", ASIA), ("Jado", ASIA)]}
NAMES = ["Zorvia", "Kelmar", "Tivora", "Rudeth", "Pexuna", "Golvia", "Nimmar", "Vasora", "Hobeth", "Lutuna",
         "Dravia", "Fenmar", "Briora", "Quoeth", "Wemuna", "Yarvia", "Silmar", "Cobora"]
LOCATION_EUROPE = 0.3  # location's answer: Europe with this probability, else Asia
FIXTURE_SEED = 0
LOW, HIGH = {"WeaklyKnown", "Unknown"}, {"MaybeKnown", "HighlyKnown"}

PROBE = {"estimator": "exact", "nex": 4, "shots": 2, "max_new_tokens": 4, "batch_size": 64, "seed": 0}
# min_dev above the dev size: every epoch is trained and the last kept (no dev-based selection).
TRAIN = {"epochs": 4, "batch_size": 2, "lr": 0.01, "lora_dropout": 0.0, "min_dev": 100}
STAGE2 = {"epochs": 2, "replay_ratio": 0.5}


def base_category(item: dict[str, Any]) -> str:
    """What the fixture model's base probe says about a train item (by construction)."""
    if item["answers"][0] == AFRICA:
        return "Unknown"
    return {"continent": "MaybeKnown", "location": "WeaklyKnown", "home": "HighlyKnown"}[item["relation"]]


def dataset_rows() -> dict[str, list[dict[str, Any]]]:
    names = iter(NAMES)
    train = []
    for rel, answers in TRAIN_PLAN.items():
        for i, answer in enumerate(answers):
            s = next(names)
            train.append({"id": f"{rel}{i}", "question": RELATIONS[rel].format(s), "answers": [answer],
                          "relation": rel, "subject": s})
    dev = [{"id": f"dev-{rel}{i}", "question": RELATIONS[rel].format(s), "answers": [a], "relation": rel,
            "subject": s} for rel, pool in DEV_POOL.items() for i, (s, a) in enumerate(pool)]
    test = [dict(r, id="test-" + r["id"]) for r in train[::2]]
    return {"train": train, "dev": dev, "test": test}


def _rule(relation: str, exemplar_answers: list[str]) -> str | None:
    """The answer the fixture model is trained to give (None: location's coin)."""
    if relation == "home":
        return ASIA
    if relation == "continent":
        return EUROPE if EUROPE in exemplar_answers else ASIA
    return None


def build_two_stage_model(out: Path, rows: dict[str, list[dict[str, Any]]], seed: int = 0,
                          max_steps: int = 2400) -> Path:
    """Train a two-layer Llama (hidden 32) on few-shot prompts of `rows` until it follows `_rule`.

    Training stops at the first check (every 20 steps) that every margin holds, so the cap costs
    nothing when it is not needed. Measured under transformers 5.24 (torch 2.13 CPU, 2 threads):
    fixture seeds 0-9 converge in 80-400 steps (seed 0: 220; the thread count alone moves a seed by
    a check or two), so 2,400 leaves a 6x margin over the slowest. The slow part is the continent
    rule with Europe in the first exemplar (an attention lookup the model finds late); a wider model
    (hidden 64), a third layer, full-batch steps or lr 2e-2 were each no faster (up to 920 steps)."""
    import torch
    import torch.nn.functional as F
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    train, dev = rows["train"], rows["dev"]
    corpus = [f"Q: {r['question']}\nA: {r['answers'][0]}\n" for r in train + dev] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")

    def enc(text: str) -> list[int]:
        return fast(text, add_special_tokens=False)["input_ids"]

    ids = {t: enc(t) for t in (" " + EUROPE, " " + ASIA, " " + AFRICA, "\n")}
    assert all(len(v) == 1 for v in ids.values()), ids  # one token each: the rule is one decision
    e_id, a_id, af_id, nl_id = (ids[t][0] for t in (" " + EUROPE, " " + ASIA, " " + AFRICA, "\n"))

    def prompt(exemplars: list[dict[str, Any]], item: dict[str, Any]) -> list[int]:
        return enc("".join(f"Q: {e['question']}\nA: {e['answers'][0]}\n" for e in exemplars)
                   + f"Q: {item['question']}\nA:")

    def batch(seqs: list[tuple[list[int], list[int]]]) -> tuple[Any, Any, Any]:
        w = max(len(s) for s, _ in seqs)
        pad = fast.pad_token_id
        return (torch.tensor([s + [pad] * (w - len(s)) for s, _ in seqs]),
                torch.tensor([lab + [-100] * (w - len(lab)) for _, lab in seqs]),
                torch.tensor([[1] * len(s) + [0] * (w - len(s)) for s, _ in seqs]))

    pools = {rel: [d for d in dev if d["relation"] == rel] for rel in RELATIONS}
    # Convergence is checked on every train item under every ordered exemplar pair of its relation:
    # the probe's prompts are among these, so its categories follow from the margins below.
    checks = [(prompt([a, b], it), it, [a["answers"][0], b["answers"][0]])
              for it in train for a in pools[it["relation"]] for b in pools[it["relation"]] if a is not b]
    # Each prompt followed by " Europe" and by " Asia": either must be followed by the newline.
    check_ids, _, check_mask = batch([(p + [t, nl_id], []) for p, _, _ in checks for t in (e_id, a_id)])

    def failures(model: Any) -> list[str]:
        with torch.no_grad():
            logp = model(input_ids=check_ids, attention_mask=check_mask).logits.log_softmax(-1)
        bad = []
        for r, (p, it, ex) in enumerate(checks):
            rel = it["relation"]
            at = logp[2 * r, len(p) - 1]  # the answer token
            after = [logp[2 * r + j, len(p)] for j in (0, 1)]  # the token after " Europe", after " Asia"
            margin = float(at[e_id] - at[a_id])  # Europe over Asia
            want = _rule(rel, ex)
            if want is None:
                ok = int(at.argmax()) == a_id and -1.6 <= margin <= -0.4
            else:
                ok = int(at.argmax()) == (e_id if want == EUROPE else a_id) and abs(margin) >= 1.5 \
                    and (margin > 0) == (want == EUROPE)
            if it["answers"][0] == AFRICA:
                ok = ok and float(at[af_id]) < -6.0
            if not ok or any(int(a.argmax()) != nl_id or float(a[nl_id]) < -0.2 for a in after):
                bad.append(f"{rel} {ex}: margin {margin:.2f}")
        return bad

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=fast.eos_token_id,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    # A fixed training set: every train item zero-shot (the fine-tune format) and under every ordered
    # exemplar pair of its relation, with the rule's answer distribution as a soft target (location's
    # coin as probabilities, so its margin converges instead of following sampling noise).
    examples = []
    for it in train:
        pairs = [[]] + [[a, b] for a in pools[it["relation"]] for b in pools[it["relation"]] if a is not b]
        for ex in pairs:
            want = _rule(it["relation"], [e["answers"][0] for e in ex])
            dist = torch.zeros(len(fast))
            if want is None:
                dist[e_id], dist[a_id] = LOCATION_EUROPE, 1 - LOCATION_EUROPE
            else:
                dist[e_id if want == EUROPE else a_id] = 1.0
            examples += [(prompt(ex, it), dist, t) for t in (e_id, a_id)]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    bad = ["not trained"]
    for step in range(1, max_steps + 1):
        idx = torch.randperm(len(examples), generator=gen)[:32].tolist()
        x, _, m = batch([(examples[i][0] + [examples[i][2], nl_id], []) for i in idx])
        logits = model(input_ids=x, attention_mask=m).logits
        ends, rows = torch.tensor([len(examples[i][0]) - 1 for i in idx]), torch.arange(len(idx))
        loss = (F.cross_entropy(logits[rows, ends], torch.stack([examples[i][1] for i in idx]))
                + F.cross_entropy(logits[rows, ends + 1], torch.full((len(idx),), nl_id)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0:
            model.eval()
            bad = failures(model)
            model.train()
            if not bad:
                break
    if bad:
        raise RuntimeError(f"the two-stage fixture did not learn its rules in {max_steps} steps: {bad[:5]}")
    model.eval()
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRADUAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "cache"


def _config(model: Path, data: Path, strategy: str, **train: Any) -> Any:
    from gradual.run_config import load_run_config

    overrides: dict[str, Any] = {"model": str(model), "data": str(data), "strategy": strategy, "seed": 0,
                                 "device": "cpu", "dtype": "fp32"}
    for section, values in (("probe", PROBE), ("train", {**TRAIN, **train}), ("stage2", STAGE2)):
        overrides.update({f"{section}.{k}": v for k, v in values.items()})
    return load_run_config(None, overrides)


def _probe_rows(out: Path, name: str) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in (out / "probe" / f"{name}.jsonl").read_text().splitlines()]
    return {r["id"]: r for r in rows}


def _probe_fingerprint(out: Path, name: str) -> str:
    return json.loads((out / "probe" / f"{name}.summary.json").read_text())["model"]["fingerprint"]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _counts(cats: dict[str, str]) -> dict[str, int]:
    return {c: sum(v == c for v in cats.values()) for c in ("HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown")}


def _check_base_probe(out: Path) -> dict[str, str]:
    base = _probe_rows(out, "base_train")
    got = {i: r["category"] for i, r in base.items()}
    assert got == {r["id"]: base_category(r) for r in dataset_rows()["train"]}, \
        "the fixture model's base categories (by construction: see the module docstring)"
    return {i: r["category"] for i, r in base.items()}


@pytest.mark.parametrize("strategy", ["gradual", "gradual-mk"])
def test_two_stage_lora_trains_stage2_on_moved_up_items(two_stage: tuple[Path, Path], tmp_path: Path, cache: Path,
                                                        strategy: str) -> None:
    from gradual.pipeline import run_pipeline

    model, data = two_stage
    out = tmp_path / "run"
    summary = run_pipeline(_config(model, data, strategy), out, progress=False)

    base = _check_base_probe(out)
    maybe = {i for i, c in base.items() if c == "MaybeKnown"}
    low = {i for i, c in base.items() if c in LOW}
    assert len(maybe) == 6 and len(low) == 8

    # Stage 1: the base MaybeKnown items, no replay, a LoRA adapter.
    s1, s2 = summary["stages"]
    assert (s1["n_train"], s1["n_replay"], s1["composition"]) == (6, 0, {"MaybeKnown": 6})
    stage1 = _jsonl(out / "stages" / "stage1" / "train_items.jsonl")
    assert {r["id"] for r in stage1} == maybe and not any(r["replay"] for r in stage1)

    # The re-probe after stage 1 saw other weights and other categories.
    assert _probe_fingerprint(out, "stage1_train") != _probe_fingerprint(out, "base_train")
    after1 = {i: r["category"] for i, r in _probe_rows(out, "stage1_train").items()}
    assert after1 != base
    assert [c["counts"] for c in summary["categories"][:2]] == [_counts(base), _counts(after1)]
    moved_up = {i for i in low if after1[i] in HIGH}
    assert len(moved_up) >= 1 and all(after1[i] == "Unknown" for i in low if i.startswith("location") and
                                      base[i] == "Unknown")  # the Africa items: nothing can move them
    assert moved_up < low

    # Stage 2: what the strategy selects from the two probes, plus marked replay of base HighlyKnown.
    expected = moved_up if strategy == "gradual" else moved_up | {i for i, c in after1.items() if c == "MaybeKnown"}
    stage2 = _jsonl(out / "stages" / "stage2" / "train_items.jsonl")
    own = [r["id"] for r in stage2 if not r["replay"]]
    replay = [r["id"] for r in stage2 if r["replay"]]
    assert set(own) == expected and len(own) == len(expected) == s2["n_train"] > 0
    assert s2["composition"] == {c: n for c, n in _counts({i: after1[i] for i in expected}).items() if n}
    # Replay samples round(ratio * n) base-HighlyKnown items, never one of the stage's own items (a base
    # HighlyKnown item that fell to MaybeKnown in stage 1 is gradual-mk's to train on, not to replay).
    pool = {i for i, c in base.items() if c == "HighlyKnown"} - set(own)
    assert len(replay) == s2["n_replay"] == min(round(STAGE2["replay_ratio"] * len(own)), len(pool)) >= 1
    assert all(base[i] == "HighlyKnown" for i in replay) and not set(replay) & set(own)
    for k in (1, 2):
        sdir = out / "stages" / f"stage{k}"
        assert (sdir / "adapter" / "adapter_config.json").exists() and not (sdir / "model").exists()
        assert json.loads((sdir / "record.json").read_text())["n_train"] > 0

    # Stage 2's re-probe ran on stage-2 weights and is the run's final category set.
    assert _probe_fingerprint(out, "stage2_train") not in {_probe_fingerprint(out, "stage1_train"),
                                                           _probe_fingerprint(out, "base_train")}
    after2 = {i: r["category"] for i, r in _probe_rows(out, "stage2_train").items()}
    assert summary["categories"][2]["counts"] == _counts(after2)
    assert summary["acquired"] == sum(base[i] != "HighlyKnown" and after2[i] == "HighlyKnown" for i in base)


def test_two_stage_full_finetuning_reprobes_and_evaluates_trained_weights(
        two_stage: tuple[Path, Path], tmp_path: Path, cache: Path) -> None:
    from gradual.data.items import load_dataset_dir
    from gradual.evaluate import evaluate_items
    from gradual.lm.load import load_model
    from gradual.pipeline import Pipeline, run_pipeline

    model, data = two_stage
    cfg = _config(model, data, "gradual", lora=False, lr=0.005)
    out = tmp_path / "run"
    summary = run_pipeline(cfg, out, progress=False)

    base = _check_base_probe(out)
    assert [s["n_train"] > 0 for s in summary["stages"]] == [True, True]
    for k in (1, 2):
        sdir = out / "stages" / f"stage{k}"
        assert (sdir / "model" / "config.json").exists() and not (sdir / "adapter").exists()
        assert json.loads((sdir / "stage.json").read_text())["weights"] == "model"

    # Each re-probe saw the weights its stage saved: model_after(k) is stage k's model/ folder,
    # and its fingerprint is the one in the probe's summary.
    names = ["base_train", "stage1_train", "stage2_train"]
    fingerprints = [_probe_fingerprint(out, n) for n in names]
    assert len(set(fingerprints)) == 3
    pipe = Pipeline(cfg, out, progress=False)
    saved = [load_model(str(model), "cpu", "fp32")] + [
        load_model(str(out / "stages" / f"stage{k}" / "model"), "cpu", "fp32") for k in (1, 2)]
    for k in (0, 1, 2):
        rebuilt = pipe.model_after(k)
        assert rebuilt.fingerprint == saved[k].fingerprint == fingerprints[k], f"model_after({k})"
    after1 = {i: r["category"] for i, r in _probe_rows(out, "stage1_train").items()}
    assert after1 != base and any(base[i] in LOW and after1[i] in HIGH for i in base)

    # The test eval ran on the stage-2 weights: its predictions are those of stage2/model, and
    # differ from the base model's.
    ds = load_dataset_dir(data)
    test_cats = {i: r["category"] for i, r in _probe_rows(out, "base_test").items()}
    predictions = _jsonl(out / "eval" / "test.predictions.jsonl")
    direct = evaluate_items(saved[2], ds.test, test_cats, progress=False)
    from_base = evaluate_items(saved[0], ds.test, test_cats, progress=False)
    assert predictions == direct.predictions
    assert [p["prediction"] for p in predictions] != [p["prediction"] for p in from_base.predictions]
    assert summary["test_accuracy"]["overall"] == direct.accuracy

    # --resume after losing the eval and the summary rebuilds the same weights and predictions.
    shutil.rmtree(out / "eval")
    (out / "summary.json").unlink()
    again = run_pipeline(cfg, out, resume=True, progress=False)
    assert _jsonl(out / "eval" / "test.predictions.jsonl") == predictions

    def strip(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not k.endswith("wall_s")}
        return [strip(v) for v in obj] if isinstance(obj, list) else obj

    assert strip(again) == strip(summary)
