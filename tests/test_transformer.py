"""Tests for attnlab.transformer: parity with torch's Transformer layers, seams, masks, errors."""
import pytest
import torch
from torch import nn

from attnlab.attention import MultiHeadAttention
from attnlab.functional import causal_mask
from attnlab.transformer import (AdditiveAttention, DecoderLayer, EncoderDecoder, EncoderLayer,
                                 FeedForward, summary_attention)

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
B, T, S, D, H, F = 3, 4, 6, 8, 2, 16


def _inputs(dtype):
    g = torch.Generator().manual_seed(1)
    src = torch.randn(B, S, D, generator=g, dtype=dtype)
    tgt = torch.randn(B, T, D, generator=g, dtype=dtype)
    real = torch.ones(B, S, dtype=torch.bool)
    real[1, -2:] = False  # the last two source tokens of sentence 1 are padding
    return src, tgt, real


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_equals_torch(dtype, norm_first):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D, H, F, batch_first=True, norm_first=norm_first).to(dtype)
    ours = EncoderLayer.from_torch(ref)
    ref.eval(), ours.eval()
    src, _, real = _inputs(dtype)
    y, w = ours(src, key_mask=real, return_attention=True)
    torch.testing.assert_close(y, ref(src, src_key_padding_mask=~real), atol=TOL[dtype], rtol=0)
    assert w.shape == (B, H, S, S) and torch.all(w[1, :, :, -2:] == 0)
    torch.testing.assert_close(ours(src, key_mask=real), y)  # the contract: same y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_torch(dtype, norm_first):
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(D, H, F, batch_first=True, norm_first=norm_first).to(dtype)
    ours = DecoderLayer.from_torch(ref)
    ref.eval(), ours.eval()
    memory, tgt, real = _inputs(dtype)
    tgt_real = torch.ones(B, T, dtype=torch.bool)
    tgt_real[2, -1] = False
    y, w = ours(tgt, memory, key_mask=tgt_real, memory_key_mask=real, return_attention=True)
    expected = ref(tgt, memory, tgt_mask=~causal_mask(T), tgt_key_padding_mask=~tgt_real,
                   memory_key_padding_mask=~real)
    torch.testing.assert_close(y, expected, atol=TOL[dtype], rtol=0)
    assert w["self"].shape == (B, H, T, T) and w["cross"].shape == (B, H, T, S)
    assert torch.all(w["self"][:, :, 0, 1:] == 0)  # causal: step 0 sees only itself
    assert torch.all(w["cross"][1, :, :, -2:] == 0)  # padding gets no weight
    torch.testing.assert_close(w["cross"].sum(-1), torch.ones(B, H, T, dtype=dtype))


def test_decoder_memory_mask_and_non_causal_match_torch():
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(D, H, F, batch_first=True).double().eval()
    ours = DecoderLayer.from_torch(ref).eval()
    memory, tgt, _ = _inputs(torch.float64)
    allowed = torch.rand(T, S, generator=torch.Generator().manual_seed(3)) > 0.3
    allowed[:, 0] = True  # every step keeps at least one key (torch gives NaN otherwise)
    y = ours(tgt, memory, is_causal=False, memory_mask=allowed)
    torch.testing.assert_close(y, ref(tgt, memory, memory_mask=~allowed), atol=1e-10, rtol=0)


def test_layers_copy_refuses_other_activations_and_types():
    with pytest.raises(ValueError, match="ReLU"):
        EncoderLayer.from_torch(nn.TransformerEncoderLayer(D, H, F, activation="gelu",
                                                           batch_first=True))
    with pytest.raises(TypeError, match="TransformerEncoderLayer"):
        EncoderLayer.from_torch(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="TransformerDecoderLayer"):
        DecoderLayer.from_torch(nn.TransformerEncoderLayer(D, H, F, batch_first=True))


def test_ablation_switches_change_the_layer():
    x = torch.randn(B, S, D)
    no_ffn = EncoderLayer(D, H, ffn=False)
    assert no_ffn.ff is None and len(no_ffn.norms) == 1
    no_norm = EncoderLayer(D, H, norm=False)
    assert all(isinstance(n, nn.Identity) for n in no_norm.norms)
    # without residuals or norms, with a zero FFN, the layer is the attention alone
    bare = EncoderLayer(D, H, residual=False, norm=False, ffn=False).eval()
    torch.testing.assert_close(bare(x), bare.self_attn(x))
    # with residuals and a zero-initialised output, a pre-norm layer is the identity
    ident = EncoderLayer(D, H)
    for lin in (ident.self_attn.out_proj, ident.ff.linear2):
        nn.init.zeros_(lin.weight), nn.init.zeros_(lin.bias)
    torch.testing.assert_close(ident(x), x)


def test_seams_summary_and_additive():
    q, k, v = torch.randn(B, H, T, 4), torch.randn(B, H, S, 4), torch.randn(B, H, S, 4)
    real = torch.ones(B, 1, 1, S, dtype=torch.bool)
    real[0, ..., 3:] = False
    out, w = summary_attention(q, k, v, real, return_attention=True)
    torch.testing.assert_close(out[0], v[0, :, :3].mean(-2, keepdim=True).expand(H, T, 4))
    torch.testing.assert_close(out[1], v[1].mean(-2, keepdim=True).expand(H, T, 4))
    assert torch.all(w[0, ..., 3:] == 0)
    add = AdditiveAttention(4, 5)
    out, w = add(q, k, v, real, return_attention=True)
    scores = torch.tanh((q @ add.w_q.T)[..., None, :] + (k @ add.w_k.T)[..., None, :, :]) @ add.w_v
    expected = torch.softmax(scores.masked_fill(~real, float("-inf")), -1)
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(out, expected @ v)
    torch.testing.assert_close(add(q, k, v, real), out)
    w_causal = add(q, k[..., :T, :], v[..., :T, :], is_causal=True, return_attention=True)[1]
    assert torch.all(w_causal.triu(1) == 0)
    # both plug into MultiHeadAttention's seam
    for fn in (summary_attention, AdditiveAttention(4)):
        mha = MultiHeadAttention(D, H, attention=fn)
        y, w = mha(torch.randn(B, T, D), torch.randn(B, S, D), return_attention=True)
        assert y.shape == (B, T, D) and w.shape == (B, H, T, S)


def test_feed_forward_is_position_wise():
    ff = FeedForward(D, F)
    x = torch.randn(B, S, D)
    torch.testing.assert_close(ff(x)[:, 2], ff(x[:, 2:3])[:, 0])
    assert ff.linear1.out_features == F and FeedForward(D).linear1.out_features == 4 * D


def test_encoder_decoder_shapes_masks_and_greedy_decoding():
    torch.manual_seed(0)
    model = EncoderDecoder(12, 9, embed_dim=D, num_heads=H, num_layers=2, ff_dim=F).eval()
    src = torch.randint(1, 12, (B, S))
    src[1, -2:] = 0  # padding
    tgt = torch.randint(1, 9, (B, T))
    logits, w = model(src, tgt, return_attention=True)
    assert logits.shape == (B, T, 9)
    assert [x.shape for x in w["cross"]] == [(B, H, T, S)] * 2
    assert [x.shape for x in w["encoder"]] == [(B, H, S, S)] * 2
    assert all(torch.all(x[1, :, :, -2:] == 0) for x in w["cross"])  # padding mask by default
    torch.testing.assert_close(model(src, tgt), logits)
    # padding does not change the other sentences' outputs, nor sentence 1's
    torch.testing.assert_close(model(src[:, :-2], tgt)[1], logits[1], atol=1e-5, rtol=0)
    # causal: changing a later input leaves earlier steps alone
    tgt2 = tgt.clone()
    tgt2[:, -1] = (tgt2[:, -1] % 8) + 1
    torch.testing.assert_close(model(src, tgt2)[:, :-1], logits[:, :-1])
    # greedy decoding: every step's argmax equals the model's logits on its own output
    out, cross = model.greedy_decode(src, 1, 5)
    assert out.shape == (B, 5) and cross[-1].shape == (B, H, 5, S)
    full = model(src, torch.cat([torch.ones(B, 1, dtype=torch.long), out[:, :-1]], 1))
    assert torch.equal(full.argmax(-1), out)


def test_encoder_decoder_bad_input():
    model = EncoderDecoder(12, 9, embed_dim=D, num_heads=H)
    with pytest.raises(ValueError, match="src must be integer tokens of shape"):
        model(torch.randn(B, S), torch.randint(1, 9, (B, T)))
    with pytest.raises(ValueError, match="tgt must be integer tokens of shape"):
        model(torch.randint(1, 12, (B, S)), torch.randint(1, 9, (B, T, 1)))
    with pytest.raises(ValueError, match="num_heads"):
        EncoderDecoder(12, 9, embed_dim=D, num_heads=3)
    with pytest.raises(ValueError, match="steps"):
        model.greedy_decode(torch.randint(1, 12, (B, S)), 1, 0)
    layer = DecoderLayer(D, H)
    with pytest.raises(ValueError, match="memory"):
        layer(torch.randn(B, T, D), torch.randn(B, S, D + 1))
    with pytest.raises(ValueError, match="batch size"):
        layer(torch.randn(B, T, D), torch.randn(B + 1, S, D))
    with pytest.raises(ValueError, match="key_mask"):
        layer(torch.randn(B, T, D), torch.randn(B, S, D), memory_key_mask=torch.ones(B, S + 1).bool())
    with pytest.raises(TypeError):
        layer(torch.randn(B, T, D), torch.randn(B, S, D), True)  # return_attention is keyword-only


def test_fully_padded_source_stays_finite():
    model = EncoderDecoder(12, 9, embed_dim=D, num_heads=H).eval()
    src = torch.zeros(B, S, dtype=torch.long)  # every source token is padding
    logits = model(src, torch.randint(1, 9, (B, T)))
    assert torch.isfinite(logits).all()


def test_training_step_reaches_every_parameter():
    model = EncoderDecoder(12, 9, embed_dim=D, num_heads=H, cross_attention=AdditiveAttention(4))
    logits = model(torch.randint(1, 12, (B, S)), torch.randint(1, 9, (B, T)))
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
