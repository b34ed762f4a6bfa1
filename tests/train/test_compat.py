"""gradual.train.compat: TrainingArguments spelled for the installed transformers mean what the config says."""

from __future__ import annotations

import pytest

from gradual.train.compat import training_args


@pytest.mark.parametrize("ratio, steps, expected", [
    (0.0, 12, 0), (0.1, 12, 2), (0.25, 12, 3), (0.5, 7, 4), (1.0, 12, 12), (1.0, 1, 1), (1.0, 9973, 9973),
])
def test_warmup_share_gives_the_same_step_count_in_every_version(ratio: float, steps: int, expected: int,
                                                                   tmp_path) -> None:
    """transformers 5 reads warmup_steps >= 1 as a step count: a share of 1.0 must still warm up for every
    step (ceil(steps * share), as transformers 4 computes it from warmup_ratio), not for one."""
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True,
                             **training_args(warmup_ratio=ratio))
    assert args.get_warmup_steps(steps) == expected


def test_group_by_length_is_spelled_for_the_installed_version(tmp_path) -> None:
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True,
                             **training_args(group_by_length=True))
    assert getattr(args, "group_by_length", None) is True or \
        str(getattr(args, "train_sampling_strategy", "")) == "group_by_length"
