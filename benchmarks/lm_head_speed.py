"""The vocabulary projection (LM head) on MKL (`F.linear`) against oneDNN, at the probe's row counts.

Run as: .venv/bin/python benchmarks/lm_head_speed.py [--rows 1,8,64,160,512,900]

SmolLM2-135M's head is 576 -> 49,152, fp32, on the CPU. For each row count M it times both
libraries on the same input (interleaved, best of several repeats) and checks they agree. The
layers' own projections (576 <-> 1,536) are printed as a control: gradual leaves them on MKL
because oneDNN is not faster there. Last line:
`lm_head_speed: onednn_x=<median speed-up over the head rows> isa=<ISA> dtype=float32`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from gradual.lm.load import cpu_isa
from gradual.lm.onednn_head import onednn_available


def _best(fn, repeats: int, inner: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t) / inner)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default="1,8,64,160,512,900")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if not onednn_available():
        raise SystemExit("lm_head_speed: this torch has no oneDNN")
    torch.manual_seed(0)
    ratios = []
    print(f"{'shape':>24} {'MKL GFLOPS':>11} {'oneDNN GFLOPS':>14} {'x':>6}")
    for k, n in ((576, 49152), (576, 1536), (1536, 576)):
        w = torch.randn(n, k) / k ** 0.5
        for m in (int(r) for r in args.rows.split(",")):
            x = torch.randn(m, k)
            torch.testing.assert_close(torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], ""),
                                       F.linear(x, w), rtol=1e-4, atol=1e-4)
            inner = max(1, 2000 // m)
            mkl = _best(lambda: F.linear(x, w), args.repeats, inner)
            dnn = _best(lambda: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], ""), args.repeats, inner)
            flop = 2 * m * k * n / 1e9
            print(f"{f'M={m} {k}->{n}':>24} {flop / mkl:11.1f} {flop / dnn:14.1f} {mkl / dnn:6.2f}")
            if n == 49152:
                ratios.append(mkl / dnn)
    print(f"lm_head_speed: onednn_x={statistics.median(ratios):.2f} isa={cpu_isa()} dtype=float32")


if __name__ == "__main__":
    main()
