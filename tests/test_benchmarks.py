"""Smoke test of benchmarks/run.py at tiny sizes: it runs, measures, and its memory numbers make sense."""
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_saved_bytes_counts_what_autograd_keeps(bench):
    x = torch.randn(16, 16, requires_grad=True)
    # exp keeps its output (16 x 16 floats); the input is excluded
    assert bench.saved_bytes(lambda: x.exp(), exclude=(x,)) == 16 * 16 * 4
    # sin keeps its input: counted unless excluded
    assert bench.saved_bytes(lambda: x.sin()) == 16 * 16 * 4
    assert bench.saved_bytes(lambda: x.sin(), exclude=(x,)) == 0


def test_time_pair_interleaves_and_returns_medians_and_ratios(bench):
    calls = []
    t_a, t_b, ratio, best_ratio = bench.time_pair(lambda: calls.append("a"), lambda: calls.append("b"),
                                      repeats=3, warmup=1, min_round_s=0.0)
    assert t_a > 0 and t_b > 0 and math.isfinite(ratio) and math.isfinite(best_ratio)
    assert calls[:2] == ["a", "b"] and "b" in calls[-2:] and "a" in calls[-2:]


def test_quick_suite_runs_and_prints_a_table(bench, capsys):
    rows = bench.main(["--quick", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "MHA fused: ours / nn.MultiheadAttention" in out and "time x" in out
    assert all(r.t_ours > 0 and r.t_ref > 0 and math.isfinite(r.ratio) for r in rows)
    by_case = {r.case: r for r in rows}
    # explicit attention keeps the (B, h, T, T) float32 weights for the backward pass
    # (at these toy sizes the fused kernel's own saved tensors can weigh as much)
    explicit = by_case["explicit softmax(QK^T)V / F.scaled_dot_product_attention"]
    sizes = dict(part.split("=") for part in explicit.size.split())
    B, h, T = int(sizes["B"]), int(sizes["h"]), int(sizes["T"])
    assert explicit.m_ours >= B * h * T * T * 4
    assert {r.group for r in rows} == {"sequence", "saving", "vision", "cheaper"}
    online = by_case["online softmax / explicit (peak memory)"]
    assert online.m_ours < online.m_ref  # at T=512 the explicit path holds the (T, T) scores
    assert all(r.target is None for r in rows)  # no targets judged at toy sizes
