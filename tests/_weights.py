"""Shared by the tests: copy a reference module's weights into ours; random queries, keys, values."""
import torch
from torch import nn


def copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy every tensor of src's state dict into dst's, in order, checking names line up by shape."""
    src_state, dst_state = src.state_dict(), dst.state_dict()
    assert len(src_state) == len(dst_state), (list(src_state), list(dst_state))
    new = {}
    for (name, target), value in zip(dst_state.items(), src_state.values()):
        assert target.shape == value.shape, (name, tuple(target.shape), tuple(value.shape))
        new[name] = value.clone()
    dst.load_state_dict(new)


def random_qkv(shape, dtype=torch.float32, seed=0):
    """Seeded q (lead, T, d), k (lead, S, d), v (lead, S, dv) for shape = (lead, T, S, d, dv)."""
    lead, T, S, d, dv = shape
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, T, d, generator=g, dtype=dtype)
    k = torch.randn(*lead, S, d, generator=g, dtype=dtype)
    v = torch.randn(*lead, S, dv, generator=g, dtype=dtype)
    return q, k, v
