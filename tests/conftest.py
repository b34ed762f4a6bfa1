"""Shared test fixtures: a tiny random-weight Llama and a byte-level BPE tokenizer, built offline."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see gradual/cli.py
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = [
    "Q: What is the capital of France?\nA: Paris\n",
    "Q: Which country is the city of Lyon in?\nA: France\n",
    "Q: Which continent is Peru on?\nA: South America\n",
    "Q: What is the currency of Japan?\nA: Japanese yen\n",
] * 4


def build_tiny_model(out: Path, seed: int = 0, layers: int = 2, hidden: int = 32) -> Path:
    """Save a tiny random Llama with a byte-level BPE tokenizer to `out` (a HF model folder)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(fast), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=fast.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir: Path):
    from gradual.lm.load import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="fp32")


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sample_items() -> list[dict]:
    """A small valid dataset over two relations (a fresh copy per test)."""
    return sample_rows()


def sample_rows() -> list[dict]:
    """sample_items' rows, for fixtures of a wider scope."""
    rows = []
    caps = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Japan", "Tokyo"), ("Peru", "Lima"), ("Egypt", "Cairo"), ("Chile", "Santiago")]
    for i, (c, a) in enumerate(caps):
        rows.append({"id": f"cap{i}", "question": f"What is the capital of {c}?", "answers": [a],
                     "relation": "capital", "subject": c})
    conts = [("France", "Europe"), ("Peru", "South America"), ("Japan", "Asia"), ("Egypt", "Africa"),
             ("Chile", "South America"), ("Italy", "Europe")]
    for i, (c, a) in enumerate(conts):
        rows.append({"id": f"con{i}", "question": f"Which continent is {c} on?", "answers": [a],
                     "relation": "continent", "subject": c})
    return rows


def items_of(rows: list[dict]) -> list:
    """Items of rows like sample_items' (source "test", lines from 1), as the probe and engine tests read them."""
    from gradual.data.items import item_from_dict

    return [item_from_dict(r, "test", i) for i, r in enumerate(rows, 1)]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None) -> Result:
    """Run `gradual.cli.main` in-process (fast; a bug's exception propagates and fails the test).

    `subprocess_cli` runs the real `python -m gradual.cli` for the checks that need a process.
    """
    from gradual.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["gradual", *args]
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def two_stage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model folder, dataset folder) of the two-stage fixture (tests/test_two_stage.py), built once per session."""
    from tests.test_two_stage import FIXTURE_SEED, build_two_stage_model, dataset_rows

    root = tmp_path_factory.mktemp("two-stage")
    rows = dataset_rows()
    for split, items in rows.items():
        write_jsonl(root / "data" / f"{split}.jsonl", items)
    return build_two_stage_model(root / "model", rows, seed=FIXTURE_SEED), root / "data"
