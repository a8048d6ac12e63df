r"""Benchmark suite: forward+backward time and activation memory, ours beside a reference.

Run from the repository root::

    .venv/bin/python benchmarks/run.py            # the full suite (a few minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # tiny sizes, a smoke test (seconds)

Every row of the printed table measures two callables *side by side in one run*: "ours" and a
"reference" (PyTorch's or timm's module with the same configuration, or, for rows marked
"saving", the costlier variant it replaces). What is measured:

- **time**: one forward pass, ``.sum().backward()``, gradients cleared; CPU, float32. After a
  warm-up, the two callables run alternately (ours, ref, ref, ours, ...) for ``--repeats``
  rounds; each round is timed over enough inner calls to last about 20 ms. The ratio is
  the *median of the per-round ratios* ours/ref, which cancels slow drifts of a shared machine;
  the times shown are medians too.
- **memory**: the bytes of the tensors autograd saves for the backward pass (collected with
  :func:`torch.autograd.graph.saved_tensors_hooks`, each storage counted once, parameters and
  inputs excluded). This is the activation memory a layer holds between forward and backward,
  the quantity that grows as T^2 for explicit attention; it is exact and does not depend on the
  allocator or on the load of the machine. (It does not count short-lived temporaries.)

Rows of the group "cheaper" measure **peak memory** instead (MiB column marked "peak"): the
largest total of tensor bytes alive during one forward pass without gradients
(:func:`attnlab.measure.peak_bytes`), the memory the online softmax saves at inference.

Targets: our fused multi-head attention within 1.10x of ``nn.MultiheadAttention`` (B=8, T in
{128, 512}, width 256, 8 heads); our vision modules, and our separable self-attention against
timm's ``LinearSelfAttention``, within 1.2x of timm's.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.attention import MultiHeadAttention
from attnlab.axial import AxialAttention2d
from attnlab.channel import EfficientChannelAttention, SqueezeExcite
from attnlab.efficient import SeparableSelfAttention, linear_attention, online_softmax_attention
from attnlab.functional import scaled_dot_product_attention
from attnlab.measure import peak_bytes, saved_bytes
from attnlab.non_local import NonLocalBlock
from attnlab.spatial import CBAM


# --- measuring -------------------------------------------------------------------------------

def fwd_bwd(module: nn.Module | None, forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """A callable doing one forward + backward pass (``forward().sum().backward()``)."""
    params = list(module.parameters()) if module is not None else []

    def step():
        for p in params:
            p.grad = None
        forward().sum().backward()
    return step


def _time_once(fn: Callable[[], None], inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def time_pair(ours: Callable[[], None], ref: Callable[[], None], repeats: int = 15,
              warmup: int = 2, min_round_s: float = 0.02, max_pair_s: float = 10.0,
              min_repeats: int = 5) -> tuple[float, float, float, float]:
    """Median seconds per call of ``ours`` and ``ref``, the median of the per-round ratios
    ours/ref, and the ratio of the two best rounds.

    The two run alternately, in swapped order every other round, so load spikes and slow drifts
    of a shared machine hit both about equally; the median of the *paired* ratios cancels them
    best (on our busy machine it was far steadier than the ratio of best rounds, which a single
    lucky round can move). A pair stops early (after at least ``min_repeats`` rounds) once it
    has used ``max_pair_s`` seconds, which bounds the suite's total time.
    """
    start = time.perf_counter()
    for _ in range(warmup):
        ours(), ref()
    one = max(_time_once(ours, 1), _time_once(ref, 1), 1e-6)
    inner = max(1, int(min_round_s / one))
    t_ours, t_ref, ratios = [], [], []
    for r in range(repeats):
        if r % 2 == 0:
            a = _time_once(ours, inner)
            b = _time_once(ref, inner)
        else:
            b = _time_once(ref, inner)
            a = _time_once(ours, inner)
        t_ours.append(a), t_ref.append(b), ratios.append(a / b)
        if r + 1 >= min_repeats and time.perf_counter() - start > max_pair_s:
            break
    return (statistics.median(t_ours), statistics.median(t_ref), statistics.median(ratios),
            min(t_ours) / min(t_ref))


@dataclass
class Row:
    group: str
    case: str
    size: str
    t_ours: float
    t_ref: float
    ratio: float
    best_ratio: float
    m_ours: int
    m_ref: int
    target: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> str:
        if self.target is None:
            return ""
        return "yes" if self.ratio <= self.target else "NO"


def compare(group: str, case: str, size: str, ours: tuple, ref: tuple, repeats: int,
            target: float | None = None, memory: str = "saved") -> Row:
    """``ours`` and ``ref`` are ``(module_or_None, forward, exclude)`` triples.

    ``memory="saved"``: bytes kept for backward; ``"peak"``: peak bytes of a forward pass.
    """
    (m_a, f_a, ex_a), (m_b, f_b, ex_b) = ours, ref
    t_a, t_b, ratio, best_ratio = time_pair(fwd_bwd(m_a, f_a), fwd_bwd(m_b, f_b), repeats=repeats)
    if memory == "peak":
        return Row(group, case, size, t_a, t_b, ratio, best_ratio, peak_bytes(f_a),
                   peak_bytes(f_b), target)
    return Row(group, case, size, t_a, t_b, ratio, best_ratio, saved_bytes(f_a, ex_a),
               saved_bytes(f_b, ex_b), target)


def _exclude(module: nn.Module | None, *inputs: torch.Tensor) -> tuple:
    return (*(module.parameters() if module is not None else ()), *inputs)


# --- copying weights -------------------------------------------------------------------------

def mha_pair(D: int, h: int) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    ref = nn.MultiheadAttention(D, h, batch_first=True)
    return MultiHeadAttention.from_torch(ref), ref


def copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers in registration order (shapes must agree)."""
    a, b = list(src.state_dict().values()), list(dst.state_dict().values())
    assert len(a) == len(b), (len(a), len(b))
    with torch.no_grad():
        for s, d in zip(a, b):
            d.copy_(s.view_as(d))


# --- the suite -------------------------------------------------------------------------------

def sequence_rows(B: int, D: int, h: int, lengths: list[int], repeats: int) -> list[Row]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for T in lengths:
        x = torch.randn(B, T, D, generator=g).requires_grad_(True)
        ours, ref = mha_pair(D, h)
        target = 1.10 if T in (128, 512) and (B, D, h) == (8, 256, 8) else None
        rows.append(compare(
            "sequence", "MHA fused: ours / nn.MultiheadAttention", f"B={B} T={T} D={D} h={h}",
            (ours, lambda: ours(x), _exclude(ours, x)),
            (ref, lambda: ref(x, x, x, need_weights=False)[0], _exclude(ref, x)),
            repeats, target))
        rows.append(compare(
            "sequence", "MHA explicit (weights kept): ours / nn.MHA need_weights", f"B={B} T={T}",
            (ours, lambda: ours(x, return_attention=True)[0], _exclude(ours, x)),
            (ref, lambda: ref(x, x, x, need_weights=True, average_attn_weights=False)[0],
             _exclude(ref, x)),
            repeats))
        d = D // h
        q, k, v = (torch.randn(B, h, T, d, generator=g).requires_grad_(True) for _ in range(3))
        rows.append(compare(
            "saving", "explicit softmax(QK^T)V / F.scaled_dot_product_attention", f"B={B} h={h} T={T}",
            (None, lambda: scaled_dot_product_attention(q, k, v, return_attention=True)[0], (q, k, v)),
            (None, lambda: F.scaled_dot_product_attention(q, k, v), (q, k, v)),
            repeats))
    return rows


def image_rows(B: int, C: int, h: int, sizes: list[int], repeats: int) -> list[Row]:
    rows = []
    g = torch.Generator().manual_seed(1)
    for S in sizes:
        x = torch.randn(B, C, S, S, generator=g).requires_grad_(True)
        # axial attention vs full attention over all N = S*S positions (same width and heads)
        axial = AxialAttention2d(C, h)
        full = nn.MultiheadAttention(C, h, batch_first=True)

        def full_fwd(x=x, full=full):
            seq = x.flatten(2).transpose(1, 2)  # (B, N, C)
            return full(seq, seq, seq, need_weights=False)[0]

        def full_fwd_explicit(x=x, full=full):
            seq = x.flatten(2).transpose(1, 2)
            return full(seq, seq, seq, need_weights=True)[0]

        rows.append(compare(
            "saving", "axial (row+col, fused) / full attention (fused)", f"B={B} C={C} {S}x{S} N={S * S}",
            (axial, lambda: axial(x), _exclude(axial, x)),
            (full, full_fwd, _exclude(full, x)), repeats))
        rows.append(compare(
            "saving", "axial (row+col, explicit) / full attention (explicit)", f"{S}x{S} N={S * S}",
            (axial, lambda: axial(x, return_attention=True)[0], _exclude(axial, x)),
            (full, full_fwd_explicit, _exclude(full, x)), repeats))
        # non-local: subsampled keys vs all keys (ours), and ours vs timm (same configuration)
        nl = NonLocalBlock(C, C // 2)
        nl_sub = NonLocalBlock(C, C // 2, sub_sample=True)
        nl_sub.load_state_dict(nl.state_dict())
        rows.append(compare(
            "saving", "non-local sub_sample / non-local (ours)", f"{S}x{S}",
            (nl_sub, lambda: nl_sub(x), _exclude(nl_sub, x)),
            (nl, lambda: nl(x), _exclude(nl, x)), repeats))
    return rows


def vision_rows(B: int, C: int, S: int, repeats: int, target: float | None = 1.2) -> list[Row]:
    from timm.layers import EcaModule, SEModule
    from timm.layers.cbam import CbamModule
    from timm.layers.non_local_attn import NonLocalAttn

    torch.manual_seed(2)
    x = torch.randn(B, C, S, S).requires_grad_(True)
    pairs = []
    ours, ref = SqueezeExcite(C, reduction=16), SEModule(C, rd_ratio=1 / 16, rd_divisor=1)
    copy_by_order(ref, ours)
    pairs.append(("SE: ours / timm SEModule", ours, ref))
    ours, ref = EfficientChannelAttention(C), EcaModule(C)
    copy_by_order(ref, ours)
    pairs.append(("ECA: ours / timm EcaModule", ours, ref))
    ours = CBAM(C, reduction=16, kernel_size=7, norm_layer=nn.BatchNorm2d)
    ref = CbamModule(C, rd_ratio=1 / 16, rd_divisor=1, mlp_bias=True)
    copy_by_order(ref, ours)
    pairs.append(("CBAM: ours / timm CbamModule", ours, ref))
    ours = NonLocalBlock(C, C // 2)
    ref = NonLocalAttn(C, use_scale=False, rd_channels=C // 2)
    with torch.no_grad():
        for a, b in ((ref.t, ours.theta), (ref.p, ours.phi), (ref.g, ours.g), (ref.z, ours.w_z[0])):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
        ref.norm.load_state_dict(ours.w_z[1].state_dict())
    pairs.append(("non-local: ours / timm NonLocalAttn", ours, ref))

    rows = []
    for name, ours, ref in pairs:
        ours.train(), ref.train()
        with torch.no_grad():  # the two agree before we time them
            torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)
        rows.append(compare("vision", name, f"B={B} C={C} {S}x{S}",
                            (ours, lambda m=ours: m(x), _exclude(ours, x)),
                            (ref, lambda m=ref: m(x), _exclude(ref, x)), repeats, target))
    return rows


def cheaper_rows(B: int, D: int, h: int, lengths: list[int], repeats: int,
                 target: float | None = 1.2) -> list[Row]:
    """The online softmax, linear attention and MobileViTv2's separable attention."""
    from timm.models.mobilevit import LinearSelfAttention

    rows = []
    g = torch.Generator().manual_seed(3)
    d = D // h
    for T in lengths:
        q, k, v = (torch.randn(B, h, T, d, generator=g).requires_grad_(True) for _ in range(3))
        explicit = (None, lambda: scaled_dot_product_attention(q, k, v, return_attention=True)[0],
                    (q, k, v))
        online = (None, lambda: online_softmax_attention(q, k, v), (q, k, v))
        fused = (None, lambda: scaled_dot_product_attention(q, k, v), (q, k, v))
        linear = (None, lambda: linear_attention(q, k, v), (q, k, v))
        size = f"B={B} h={h} T={T}"
        rows += [compare("cheaper", "online softmax / explicit (peak memory)", size, online,
                         explicit, repeats, memory="peak"),
                 compare("cheaper", "online softmax / fused kernel (peak memory)", size, online,
                         fused, repeats, memory="peak"),
                 compare("cheaper", "linear attention / fused kernel (peak memory)", size, linear,
                         fused, repeats, memory="peak")]
    ref = LinearSelfAttention(D)
    ours = SeparableSelfAttention.from_timm(ref)
    P, N = 4, lengths[-1] // 4
    x = torch.randn(B, D, P, N, generator=g).requires_grad_(True)
    tokens = x.detach().permute(0, 2, 3, 1).reshape(B * P, N, D).requires_grad_(True)
    with torch.no_grad():  # the two agree before we time them
        torch.testing.assert_close(ours(tokens).view(B, P, N, D).permute(0, 3, 1, 2), ref(x),
                                   rtol=1e-4, atol=1e-5)
    rows.append(compare("cheaper", "separable: ours / timm LinearSelfAttention",
                        f"B={B} D={D} P={P} N={N}", (ours, lambda: ours(tokens),
                                                     _exclude(ours, tokens)),
                        (ref, lambda: ref(x), _exclude(ref, x)), repeats, target))
    return rows


def format_table(rows: list[Row]) -> str:
    head = (f"{'group':<9} {'case':<58} {'size':<24} {'ours ms':>9} {'ref ms':>9} {'time x':>7} {'best x':>6} "
            f"{'ours MiB':>9} {'ref MiB':>9} {'mem x':>6} {'target':>6} {'ok':>3}")
    lines = [head, "-" * len(head)]
    for r in rows:
        mem = f"{r.m_ours / r.m_ref:6.2f}" if r.m_ref else "   n/a"
        tgt = f"{r.target:6.2f}" if r.target else ""
        lines.append(f"{r.group:<9} {r.case:<58} {r.size:<24} {r.t_ours * 1e3:9.2f} {r.t_ref * 1e3:9.2f} "
                     f"{r.ratio:7.2f} {r.best_ratio:6.2f} {r.m_ours / 2**20:9.2f} {r.m_ref / 2**20:9.2f} {mem} {tgt:>6} {r.ok:>3}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per pair")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: robust on a shared machine; 0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    if args.quick:
        repeats = args.repeats or 2
        rows = (sequence_rows(2, 16, 2, [8], repeats) + image_rows(1, 8, 2, [4], repeats)
                + vision_rows(2, 16, 4, repeats, target=None)  # no targets at toy sizes
                + cheaper_rows(1, 16, 2, [512], repeats, target=None))
    else:
        repeats = args.repeats or 11
        rows = (sequence_rows(8, 256, 8, [128, 256, 512], repeats)
                + image_rows(4, 32, 4, [8, 16, 32], repeats)
                + vision_rows(8, 64, 32, repeats)
                + cheaper_rows(2, 64, 2, [1024, 4096], repeats))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float32, CPU, forward+backward.\n"
          f"ms = medians over up to {repeats} interleaved rounds; time x = median of the per-round "
          "ratios ours/ref (judged against the target); best x = ratio of the best rounds;\n"
          "MiB = tensors saved for backward (parameters and inputs excluded), mem x = ours/ref.")
    print(format_table(rows))
    missed = [r for r in rows if r.ok == "NO"]
    print(f"\n{sum(r.ok == 'yes' for r in rows)} of {sum(bool(r.ok) for r in rows)} targets met"
          + (": missed " + "; ".join(f"{r.case} [{r.size}] {r.ratio:.2f}x" for r in missed) if missed else "")
          + f". Total {time.perf_counter() - t0:.0f} s.")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
