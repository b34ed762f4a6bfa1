"""`gradual export --format trl|chat` read back by the tool it is for: TRL's SFTTrainer trains on it.

A file that loads as JSON but that SFTTrainer cannot tokenize (a wrong column, a chat turn TRL does not
accept) would pass every test of the file's own shape; here the consumer itself takes one step."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_export import write_probe

trl = pytest.importorskip("trl")  # in the test extra; a user's own environment may lack it

# A minimal chat template for the tiny tokenizer (a base model has none; users add one the same way).
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


@pytest.mark.parametrize("fmt", ["trl", "chat"])
def test_sft_trainer_trains_one_step_on_the_export(fmt: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / f"{fmt}.jsonl"
    r = run_cli("export", "--probe", str(write_probe(tmp_path / "probe.jsonl")), "--categories", "all",
                "--format", fmt, "--out", str(out), "--no-dataset-info")
    assert r.returncode == 0, r.stderr
    ds = load_dataset("json", data_files=str(out), split="train")
    assert set(ds.column_names) == ({"prompt", "completion"} if fmt == "trl" else {"messages"})

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    if fmt == "chat":
        tok.chat_template = CHAT_TEMPLATE
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # bf16 off: SFTConfig turns it on where the CPU has it, and the mixed precision it gives accelerate's
    # process-wide AcceleratorState would then carry over into every later Trainer of this test process.
    args = trl.SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, per_device_train_batch_size=2,
                         learning_rate=1e-2, report_to=[], use_cpu=True, save_strategy="no", logging_steps=1,
                         bf16=False, fp16=False)
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    try:
        trainer.train()
    finally:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    assert trainer.state.global_step == 1
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = batch["labels"][0]
    assert (labels != -100).any()
    if fmt == "trl":  # prompt/completion: TRL trains on the answer only (completion_only_loss), as gradual does
        assert (labels == -100).any()
