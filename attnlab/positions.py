r"""Positions inside attention: rotary embeddings (RoPE), linear biases (ALiBi), T5's buckets.

Chapter 2's encodings are *added to the tokens*. The schemes here act on the scores instead,
and each plugs into :class:`attnlab.attention.MultiHeadAttention` through its ``attention``
seam as one function, so every softmax still runs in
:func:`attnlab.functional.scaled_dot_product_attention`:

- **RoPE** rotates each pair of query and key features by an angle proportional to the
  position, so the score of query m and key n depends on m - n only:

  .. math::

      \langle R_m q, R_n k \rangle = \langle q, R_{n-m} k \rangle, \qquad
      R_t = \bigoplus_i \begin{pmatrix}\cos t\theta_i & -\sin t\theta_i \\
      \sin t\theta_i & \cos t\theta_i\end{pmatrix}, \quad \theta_i = b^{-2i/d}.

  Two pairings are in circulation: *interleaved* pairs :math:`(x_{2i}, x_{2i+1})` (the paper,
  ``rotary-embedding-torch``, Meta's LLaMA code) and *halves* :math:`(x_i, x_{i+d/2})` ("rotate
  half": GPT-NeoX, Hugging Face's LLaMA, ``x-transformers``). They are the same function up to a fixed permutation of the
  features (:func:`pairing_permutation`). ``scale`` < 1 multiplies the positions: position
  interpolation for sequences longer than those trained on.
- **ALiBi** adds :math:`-m_h\,|t - s|` to head h's scores, with geometric slopes
  :math:`m_h` (:func:`alibi_slopes`), through the kernel's float-mask path.
- **T5's relative bias** adds a learned scalar per head and per *bucket* of the offset s - t:
  exact for small offsets, logarithmic up to ``max_distance``, one bucket beyond.

When there are fewer queries than keys (T < S, decoding with a cache), the queries are the last
T positions, as in :func:`attnlab.functional.causal_mask`.

Shapes: q ``(B, h, T, d)``, k ``(B, h, S, d)``, v ``(B, h, S, d_v)``; biases ``(h, T, S)``.

References: Su et al., *RoFormer: Enhanced Transformer with Rotary Position Embedding*, 2021,
arXiv:2104.09864; Press, Smith, Lewis, *Train Short, Test Long: Attention with Linear Biases
Enables Input Length Extrapolation*, 2022, arXiv:2108.12409; Raffel et al., *Exploring the Limits
of Transfer Learning with a Unified Text-to-Text Transformer*, 2020, arXiv:1910.10683; Chen et al.,
*Extending Context Window of Large Language Models via Positional Interpolation*, 2023,
arXiv:2306.15595.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from attnlab import checks
from attnlab.functional import merge_masks, scaled_dot_product_attention

__all__ = ["rope_angles", "apply_rope", "pairing_permutation", "ntk_scaled_base", "RotaryAttention",
           "alibi_slopes", "alibi_bias", "ALiBiAttention", "t5_bucket", "T5RelativeBias"]


def _positive_float(value, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def _positions(positions, length: int, name: str, device) -> torch.Tensor:
    """``positions`` as a 1-D tensor of ``length`` numbers (default 0 .. length-1)."""
    if positions is None:
        return torch.arange(length, device=device)
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"{name} must be a 1-D torch.Tensor of positions, got "
                        f"{type(positions).__name__}")
    if positions.dim() != 1 or positions.shape[0] != length:
        raise ValueError(f"{name} must have shape ({length},), one position per row, got "
                         f"{tuple(positions.shape)}")
    if positions.dtype == torch.bool or positions.is_complex():
        raise TypeError(f"{name} must hold integer or real positions, got dtype {positions.dtype}")
    return positions


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0,
                scale: float = 1.0) -> torch.Tensor:
    r"""The rotation angles :math:`(s\,t)\,\theta_i`, ``(L, d/2)``, for positions ``(L,)``."""
    d = checks.positive_int(head_dim, "head_dim")
    if d % 2:
        raise ValueError(f"head_dim must be even (RoPE rotates features in pairs), got {d}")
    base, scale = _positive_float(base, "base"), _positive_float(scale, "scale")
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64, device=positions.device) / d)
    return (positions.to(torch.float64) * scale)[:, None] * theta  # (L, d/2)


def apply_rope(x: torch.Tensor, positions: torch.Tensor | None = None, *, base: float = 10000.0,
               scale: float = 1.0, interleaved: bool = True) -> torch.Tensor:
    r"""Rotate the features of ``x`` ``(..., L, d)`` by the angles of their positions.

    Args:
        x: queries or keys, ``(..., L, d)`` with d even.
        positions: ``(L,)`` positions of the rows (default 0 .. L-1).
        base: b of :math:`\theta_i = b^{-2i/d}`.
        scale: multiplies the positions (position interpolation: L_train / L_test).
        interleaved: pairs :math:`(x_{2i}, x_{2i+1})` as in the paper; False for the halves
            :math:`(x_i, x_{i+d/2})` of "rotate half".
    """
    checks.tensor(x, "x")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., L, d), got {tuple(x.shape)}")
    pos = _positions(positions, x.shape[-2], "positions", x.device)
    angles = rope_angles(pos, x.shape[-1], base, scale)  # (L, d/2), float64
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., L, d/2) each
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def pairing_permutation(head_dim: int) -> torch.Tensor:
    """The feature order that turns the interleaved pairing into the halves pairing:
    ``apply_rope(x[..., p], interleaved=False) == apply_rope(x, interleaved=True)[..., p]``."""
    d = checks.positive_int(head_dim, "head_dim")
    if d % 2:
        raise ValueError(f"head_dim must be even, got {d}")
    return torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2)))


def ntk_scaled_base(base: float, factor: float, head_dim: int) -> float:
    r"""NTK-aware RoPE scaling: the base :math:`b\,f^{d/(d-2)}` that stretches the lowest frequency
    by the factor f while leaving the highest almost as it is (for sequences f times longer than
    those trained on)."""
    base, factor = _positive_float(base, "base"), _positive_float(factor, "factor")
    d = checks.positive_int(head_dim, "head_dim")
    if d % 2 or d < 4:
        raise ValueError(f"head_dim must be even and >= 4, got {d}")
    return base * factor ** (d / (d - 2))


def _query_key_positions(T: int, S: int, device):
    """Queries are the last T of S positions (self-attention: T == S)."""
    return torch.arange(S - T, S, device=device), torch.arange(S, device=device)


class RotaryAttention:
    r"""Scaled dot-product attention with RoPE applied to the queries and keys first.

    Pass an instance as ``MultiHeadAttention(..., attention=RotaryAttention())``. Called like
    :func:`attnlab.functional.scaled_dot_product_attention`; queries sit at positions
    S-T .. S-1 and keys at 0 .. S-1 unless ``q_positions`` / ``k_positions`` say otherwise.

    Args:
        base, scale, interleaved: as in :func:`apply_rope`.
    """

    def __init__(self, base: float = 10000.0, scale: float = 1.0, interleaved: bool = True):
        self.base, self.scale = _positive_float(base, "base"), _positive_float(scale, "scale")
        if not isinstance(interleaved, bool):
            raise TypeError(f"interleaved must be True or False, got {interleaved!r}")
        self.interleaved = interleaved

    def __call__(self, q, k, v, mask=None, *, dropout_p: float = 0.0, is_causal: bool = False,
                 return_attention: bool = False, q_positions=None, k_positions=None):
        checks.tensor(q, "q"), checks.tensor(k, "k")
        if q.dim() < 2 or k.dim() < 2:
            raise ValueError(f"q and k must have shape (..., T, d) and (..., S, d), got "
                             f"{tuple(q.shape)} and {tuple(k.shape)}")
        T, S = q.shape[-2], k.shape[-2]
        qp, kp = _query_key_positions(T, S, q.device) if T <= S else (None, None)
        qp = qp if q_positions is None else q_positions
        kp = kp if k_positions is None else k_positions
        rope = dict(base=self.base, scale=self.scale, interleaved=self.interleaved)
        q = apply_rope(q, _positions(qp, T, "q_positions", q.device), **rope)
        k = apply_rope(k, _positions(kp, S, "k_positions", k.device), **rope)
        return scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p,
                                            is_causal=is_causal, return_attention=return_attention)

    def __repr__(self) -> str:
        return (f"RotaryAttention(base={self.base:g}, scale={self.scale:g}, "
                f"interleaved={self.interleaved})")


def _check_heads(q, k, num_heads: int) -> None:
    """A per-head bias needs (B, h, T, d) queries with the bias's h heads."""
    checks.tensor(q, "q"), checks.tensor(k, "k")
    if q.dim() != 4 or q.shape[1] != num_heads:
        raise ValueError(f"q must have shape (B, h, T, d) with h = {num_heads} heads, "
                         f"got {tuple(q.shape)}")


def alibi_slopes(num_heads: int) -> torch.Tensor:
    r"""ALiBi's slopes ``(h,)``: :math:`2^{-8i/h}`, i = 1..h, for h a power of two; otherwise
    those of the power of two below h, then every other slope of the one above (the paper's
    rule, section 3)."""
    h = checks.positive_int(num_heads, "num_heads")

    def power_of_two(n):
        return [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]

    low = 2 ** math.floor(math.log2(h))
    slopes = power_of_two(low) + power_of_two(2 * low)[0::2][:h - low]
    return torch.tensor(slopes, dtype=torch.float64)


def alibi_bias(num_heads: int, T: int, S: int | None = None, *, slopes=None,
               device=None) -> torch.Tensor:
    r"""ALiBi's bias ``(h, T, S)``: :math:`-m_h\,|t - s|` (queries at the last T of S positions).

    With a causal mask only s <= t take part, where this is the paper's :math:`-m_h (t - s)`.
    """
    S = T if S is None else S
    T, S = checks.positive_int(T, "T"), checks.positive_int(S, "S")
    slopes = alibi_slopes(num_heads) if slopes is None else slopes
    if not isinstance(slopes, torch.Tensor) or slopes.shape != (num_heads,):
        raise ValueError(f"slopes must be a tensor of shape ({num_heads},), one per head")
    tq, tk = _query_key_positions(T, S, device)
    distance = (tq[:, None] - tk[None, :]).abs().to(torch.float64)  # (T, S)
    return -slopes.to(device=device, dtype=torch.float64)[:, None, None] * distance  # (h, T, S)


class ALiBiAttention:
    r"""Scaled dot-product attention with ALiBi's bias added to the scores (the float-mask path).

    Pass an instance as ``MultiHeadAttention(..., attention=ALiBiAttention(num_heads))``; the
    queries and keys carry no position of their own.
    """

    def __init__(self, num_heads: int):
        self.num_heads = checks.positive_int(num_heads, "num_heads")
        self.slopes = alibi_slopes(num_heads)

    def __call__(self, q, k, v, mask=None, *, dropout_p: float = 0.0, is_causal: bool = False,
                 return_attention: bool = False):
        _check_heads(q, k, self.num_heads)
        bias = alibi_bias(self.num_heads, q.shape[-2], k.shape[-2], slopes=self.slopes,
                          device=q.device).to(q.dtype)  # (h, T, S)
        return scaled_dot_product_attention(q, k, v, merge_masks(mask, bias), dropout_p=dropout_p,
                                            is_causal=is_causal, return_attention=return_attention)

    def __repr__(self) -> str:
        return f"ALiBiAttention(num_heads={self.num_heads})"


def t5_bucket(offset: torch.Tensor, *, bidirectional: bool = True, num_buckets: int = 32,
              max_distance: int = 128) -> torch.Tensor:
    r"""T5's bucket of each key-minus-query offset ``s - t`` (an integer tensor, any shape).

    Half the buckets (all, if not ``bidirectional``: then keys after the query share bucket 0)
    hold the exact offsets 0 .. n/2 - 1; the rest are logarithmic up to ``max_distance``, and
    farther offsets share the last bucket.
    """
    if not isinstance(offset, torch.Tensor) or offset.is_floating_point() or offset.dtype == torch.bool:
        raise TypeError("offset must be an integer torch.Tensor of key-minus-query offsets")
    n = checks.positive_int(num_buckets, "num_buckets")
    max_distance = checks.positive_int(max_distance, "max_distance")
    bucket = torch.zeros_like(offset)
    if bidirectional:
        n //= 2
        bucket = bucket + (offset > 0).long() * n
        distance = offset.abs()
    else:
        distance = (-offset).clamp(min=0)
    exact = n // 2
    if exact < 1 or max_distance <= exact:
        raise ValueError(f"num_buckets ({num_buckets}) and max_distance ({max_distance}) leave no "
                         "room for logarithmic buckets: need num_buckets >= 4 (bidirectional) and "
                         "max_distance > the exact range")
    far = exact + (torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                   * (n - exact)).long()
    far = far.clamp(max=n - 1)
    return bucket + torch.where(distance < exact, distance, far)


class T5RelativeBias(nn.Module):
    r"""T5's learned relative bias: one scalar per head and bucket of the offset s - t.

    Call it as an attention function (``MultiHeadAttention(..., attention=T5RelativeBias(h))``)
    or ask it for the bias alone with :meth:`bias`. T5 does not scale its scores by
    :math:`1/\sqrt{d}`; this module keeps the book's kernel, which does.

    Args:
        num_heads: h.
        num_buckets, max_distance, bidirectional: as in :func:`t5_bucket` (T5: 32, 128; the
            encoder is bidirectional, the decoder not).
    """

    def __init__(self, num_heads: int, num_buckets: int = 32, max_distance: int = 128,
                 bidirectional: bool = True):
        super().__init__()
        self.num_heads = checks.positive_int(num_heads, "num_heads")
        self.num_buckets = checks.positive_int(num_buckets, "num_buckets")
        self.max_distance = checks.positive_int(max_distance, "max_distance")
        self.bidirectional = bool(bidirectional)
        t5_bucket(torch.zeros(1, dtype=torch.long), bidirectional=self.bidirectional,
                  num_buckets=num_buckets, max_distance=max_distance)  # checks the sizes
        self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)

    def bias(self, T: int, S: int | None = None) -> torch.Tensor:
        """The bias ``(h, T, S)`` (queries at the last T of S positions)."""
        S = T if S is None else S
        T, S = checks.positive_int(T, "T"), checks.positive_int(S, "S")
        device = self.relative_attention_bias.weight.device
        tq, tk = _query_key_positions(T, S, device)
        buckets = t5_bucket(tk[None, :] - tq[:, None], bidirectional=self.bidirectional,
                            num_buckets=self.num_buckets, max_distance=self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)  # (h, T, S)

    def forward(self, q, k, v, mask=None, *, dropout_p: float = 0.0, is_causal: bool = False,
                return_attention: bool = False):
        _check_heads(q, k, self.num_heads)
        bias = self.bias(q.shape[-2], k.shape[-2]).to(q.dtype)  # (h, T, S)
        return scaled_dot_product_attention(q, k, v, merge_masks(mask, bias), dropout_p=dropout_p,
                                            is_causal=is_causal, return_attention=return_attention)
