"""Shared by the parity tests: copy a reference module's weights into ours."""
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
