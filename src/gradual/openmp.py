"""How PyTorch's OpenMP threads wait between ops. Must run before torch loads: the CLI and the
benchmarks call `set_wait_policy()` first thing.

Run as: imported by gradual.cli and benchmarks/*.py; no command of its own.

libgomp's own default (spin for a short while, then sleep) is the fastest where gradual has the
CPU to itself: measured on the probe of 100 world train items (AVX2, fp32, idle 2-core machine)
45.7 s with the default vs 56.6 s with OMP_WAIT_POLICY=PASSIVE (1.24x). Where several processes
share a node's cores (accelerate launch / torchrun on CPU), spinning threads take cycles from the
other ranks, and a small op was measured 10-300x slower (a dtype cast 11.7 ms vs 0.05 ms): there
the threads wait passively. A policy the user set is always kept.
"""

from __future__ import annotations

import os


def set_wait_policy() -> str:
    """Set OMP_WAIT_POLICY for this process (see the module docstring); returns the policy in force."""
    if "OMP_WAIT_POLICY" not in os.environ:
        try:
            local = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
        except ValueError:
            local = 1
        if local > 1:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return os.environ.get("OMP_WAIT_POLICY", "default")
