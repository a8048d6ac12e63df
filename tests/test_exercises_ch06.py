"""Chapter 6's checkers: the reference passes; each typical mistake gets its own hint."""
import torch
import torch.nn.functional as F

from attnlab.exercises import check_non_local_block, check_non_local_cost
from _feedback import not_done, wrong


def block(x, w_theta, b_theta, w_phi, b_phi, w_g, b_g, w_z, b_z, sub_sample=False, *,
          softmax_dim=-1, residual=True, transpose=False, scale=1.0, pool=True, ceil=True,
          reshape_first=False):
    B, C, H, W = x.shape
    pixels = x.flatten(2).transpose(1, 2)                            # (B, N, C)
    theta = pixels @ w_theta.T + b_theta                             # (B, N, d)
    phi, g = pixels @ w_phi.T + b_phi, pixels @ w_g.T + b_g          # (B, N, d)
    if sub_sample and pool:
        def down(t):
            t = t.transpose(1, 2).reshape(B, -1, H, W)
            return F.max_pool2d(t, 2, ceil_mode=ceil).flatten(2).transpose(1, 2)
        phi, g = down(phi), down(g)
    a = torch.softmax(scale * theta @ phi.transpose(1, 2), dim=softmax_dim)   # (B, N, M)
    y = (a.transpose(1, 2) if transpose else a) @ g                  # (B, N, d)
    y = y.reshape(B, H, W, -1) if reshape_first else y
    z = y @ w_z.T + b_z                                              # (B, N, C) or (B, H, W, C)
    z = z.transpose(1, 2).reshape(B, C, H, W) if not reshape_first else z.permute(0, 3, 1, 2)
    return z + x if residual else z


def test_non_local_block_reference_passes():
    feedback = check_non_local_block(block)
    assert feedback.ok and feedback.startswith("Correct!") and "6 cases" in feedback
    # the order of reshapes does not matter as long as channels stay channels
    assert check_non_local_block(lambda *a: block(*a, reshape_first=True)).ok


def test_non_local_block_mistakes_are_named():
    assert wrong(check_non_local_block(lambda *a: block(*a, softmax_dim=1)), "over the queries")
    assert wrong(check_non_local_block(lambda *a: block(*a, residual=False)),
                 "residual is missing")
    assert wrong(check_non_local_block(lambda *a: block(*a, transpose=True)),
                 "affinity is transposed")
    assert wrong(check_non_local_block(lambda *a: block(*a, scale=0.5)), "sqrt(d)")
    assert wrong(check_non_local_block(lambda *a: block(*a, pool=False)), "max-pooled 2x2",
                 "sub_sample=True")
    assert wrong(check_non_local_block(lambda *a: block(*a, ceil=False)), "ceil_mode=True")

    def flat(x, *weights):                 # (B, N, d) reshaped to (B, d, H, W) directly
        B, C, H, W = x.shape
        w_theta, b_theta, w_phi, b_phi, w_g, b_g, w_z, b_z, _ = weights
        pixels = x.flatten(2).transpose(1, 2)
        a = torch.softmax((pixels @ w_theta.T + b_theta) @ (pixels @ w_phi.T + b_phi).mT, -1)
        y = (a @ (pixels @ w_g.T + b_g)).reshape(B, -1, H, W)
        return torch.einsum("cd,bdhw->bchw", w_z, y) + b_z[:, None, None] + x
    assert wrong(check_non_local_block(flat), "without transposing")


def test_non_local_block_shapes_and_stubs():
    assert wrong(check_non_local_block(lambda *a: block(*a).flatten(2)),
                 "expected shape (2, 8, 5, 6), got (2, 8, 30)")
    assert wrong(check_non_local_block("block"), "pass your function")

    def stub(x, w_theta, b_theta, w_phi, b_phi, w_g, b_g, w_z, b_z, sub_sample):
        raise NotImplementedError
    assert not_done(check_non_local_block(stub))
    assert not_done(check_non_local_block(lambda *a: None))
    assert wrong(check_non_local_block(lambda *a: 1 / 0), "ZeroDivisionError")


def test_non_local_cost_stub_is_not_done():
    assert not_done(check_non_local_cost(..., ...))
    assert wrong(check_non_local_cost([1, 2], 3), "should be a number")
