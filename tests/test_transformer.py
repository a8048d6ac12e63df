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
    with pytest.raises(TypeError, match="src must hold integer ids"):
        model(torch.randn(B, S), torch.randint(1, 9, (B, T)))
    with pytest.raises(ValueError, match=r"tgt must have shape \(B, L\)"):
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
    with pytest.raises(ValueError, match="memory_key_mask"):
        layer(torch.randn(B, T, D), torch.randn(B, S, D), memory_key_mask=torch.ones(B, S + 1).bool())
    with pytest.raises(TypeError):
        layer(torch.randn(B, T, D), torch.randn(B, S, D), True)  # return_attention is keyword-only


# --- bad input, one class at a time (issue #28): the exception type and the argument named ------

_ED = EncoderDecoder(12, 9, embed_dim=D, num_heads=H, max_len=10)
_SRC, _TGT = torch.randint(1, 12, (B, S)), torch.randint(0, 9, (B, T))


@pytest.mark.parametrize("call, error, words", [
    # token ids: not a tensor, not integers, out of the vocabulary, wrong rank, too long
    (lambda: _ED(_SRC.tolist(), _TGT), TypeError, "src must be a torch.Tensor"),
    (lambda: _ED(_SRC.float(), _TGT), TypeError, "src must hold integer ids"),
    (lambda: _ED(_SRC > 3, _TGT), TypeError, "src must hold integer ids"),
    (lambda: _ED(torch.full((B, S), 12), _TGT), ValueError, r"src must lie in \[0, 12\)"),
    (lambda: _ED(torch.full((B, S), -1), _TGT), ValueError, r"src must lie in \[0, 12\)"),
    (lambda: _ED(_SRC, torch.full((B, T), 9)), ValueError, r"tgt must lie in \[0, 9\)"),
    (lambda: _ED(_SRC[0], _TGT), ValueError, r"src must have shape \(B, L\)"),
    (lambda: _ED(torch.ones(B, 11, dtype=torch.long), _TGT), ValueError, "max_len=10"),
    # arguments that must agree with each other
    (lambda: _ED(_SRC, _TGT[:1]), ValueError, "same batch size"),
    (lambda: _ED(_SRC, _TGT, src_key_mask=torch.ones(B, S + 1, dtype=torch.bool)), ValueError,
     r"src_key_mask must have shape \(B, S\)"),
    (lambda: _ED(_SRC, _TGT, src_key_mask=torch.ones(B, S, dtype=torch.long)), TypeError,
     "src_key_mask must be bool"),
    (lambda: _ED.decode(_TGT, torch.randn(B, S, D + 1)), ValueError, "memory must have width"),
    (lambda: _ED.decode(_TGT, torch.randn(B + 1, S, D)), ValueError, "same batch size"),
    (lambda: _ED.encode(_SRC, weights={}), TypeError, "weights must be a list"),
    (lambda: _ED.decode(_TGT, torch.randn(B, S, D), weights=[]), TypeError, "weights must be a dict"),
    # greedy decoding: the start token, the number of steps
    (lambda: _ED.greedy_decode(_SRC, 9, 3), ValueError, r"start must lie in \[0, 9\)"),
    (lambda: _ED.greedy_decode(_SRC, -1, 3), ValueError, "start must be an int >= 0"),
    (lambda: _ED.greedy_decode(_SRC, 1.0, 3), TypeError, "start must be an int"),
    (lambda: _ED.greedy_decode(_SRC, torch.ones(B + 1, 1, dtype=torch.long), 3), ValueError,
     "start must have shape"),
    (lambda: _ED.greedy_decode(_SRC, 1, 2.0), TypeError, "steps must be an int"),
    (lambda: _ED.greedy_decode(_SRC, 1, 11), ValueError, "max_len=10"),
    # constructors: counts, ids, rates, seams
    (lambda: EncoderDecoder(0, 9), ValueError, "src_vocab must be >= 1"),
    (lambda: EncoderDecoder(12, 9, embed_dim=2.5), TypeError, "embed_dim must be an int"),
    (lambda: EncoderDecoder(12, 9, pad_id=12), ValueError, "pad_id must be a token"),
    (lambda: EncoderDecoder(12, 9, max_len=0), ValueError, "max_len must be >= 1"),
    (lambda: EncoderDecoder(12, 9, num_layers=True), TypeError, "num_layers must be an int"),
    (lambda: EncoderDecoder(12, 9, dropout=1.0), ValueError, "dropout must be in"),
    (lambda: EncoderDecoder(12, 9, cross_attention=3), TypeError, "cross_attention must be a function"),
    (lambda: EncoderLayer(D, H, dropout=float("nan")), ValueError, "dropout must be in"),
    (lambda: FeedForward(D, 0), ValueError, "ff_dim must be >= 1"),
    (lambda: AdditiveAttention(2.0), TypeError, "head_dim must be an int"),
    (lambda: AdditiveAttention(4, 0), ValueError, "hidden_dim must be >= 1"),
    # layers: the input, the memory and their masks
    (lambda: FeedForward(D)(torch.randn(B, T, D + 1)), ValueError, "x must have width 8"),
    (lambda: FeedForward(D)([[1.0] * D]), TypeError, "x must be a torch.Tensor"),
    (lambda: FeedForward(D)(torch.ones(B, T, D, dtype=torch.long)), TypeError, "x must be floating"),
    (lambda: DecoderLayer(D, H)(torch.randn(B, T, D), [[1.0]]), TypeError, "memory must be a torch"),
    (lambda: DecoderLayer(D, H)(torch.randn(B, T, D), torch.randn(B, S, D),
                                memory_mask=torch.ones(B, T, S + 1, dtype=torch.bool)),
     ValueError, "memory_mask"),
    (lambda: DecoderLayer(D, H)(torch.randn(B, T, D), torch.randn(B, S, D), memory_mask=[[True]]),
     TypeError, "memory_mask must be a torch.Tensor"),
    (lambda: EncoderLayer(D, H)(torch.randn(B, S, D), key_mask=torch.ones(B, S, dtype=torch.int8)),
     TypeError, "key_mask must be bool"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()


_Q, _K, _V = torch.randn(B, H, T, 4), torch.randn(B, H, S, 4), torch.randn(B, H, S, 3)


@pytest.mark.parametrize("seam", [summary_attention, AdditiveAttention(4)], ids=["summary", "additive"])
@pytest.mark.parametrize("args, kwargs, error, words", [
    ((_Q.tolist(), _K, _V), {}, TypeError, "q must be a torch.Tensor"),
    ((_Q.long(), _K, _V), {}, TypeError, "q must be floating point"),
    ((_Q, _K, _V[:, :, :2]), {}, ValueError, r"v must have shape \(\.\.\., S, d_v\)"),
    ((_Q, _K, _V, torch.ones(3, T, S, dtype=torch.bool)), {}, ValueError, "mask of shape"),
    ((_Q, _K, _V, torch.ones(T, S, dtype=torch.int32)), {}, TypeError, "mask must be bool"),
    ((_Q, _K, _V), {"dropout_p": 1.5}, ValueError, "dropout_p must be in"),
])
def test_the_seams_check_what_the_kernel_checks(seam, args, kwargs, error, words):
    with pytest.raises(error, match=words):
        seam(*args, **kwargs)


def test_additive_seam_names_the_head_width():
    with pytest.raises(ValueError, match="head_dim = 4"):
        AdditiveAttention(4)(torch.randn(B, H, T, 5), torch.randn(B, H, S, 5), _V)


def test_encoder_decoder_docstring_says_what_the_code_does():
    """The embeddings are not scaled by sqrt(D): the docstring says so, and the code agrees."""
    model = EncoderDecoder(12, 9, embed_dim=D, num_heads=H).eval()
    assert "not* multiplied" in EncoderDecoder.__doc__
    memory = model.encode(_SRC)
    x = model.pos(model.src_embed(_SRC))  # unscaled embeddings plus positions
    for layer in model.encoder:
        x = layer(x)
    torch.testing.assert_close(memory, model.encoder_norm(x))


def test_greedy_decoding_may_fill_max_len():
    """The decoder reads k + steps - 1 tokens: steps = max_len with one start token is legal."""
    out, _ = _ED.greedy_decode(_SRC, 1, 10)
    assert out.shape == (B, 10)
    more, _ = _ED.greedy_decode(_SRC, out[:, :3], 2)  # continue from three tokens
    assert more.shape == (B, 2)


def test_empty_batches_and_sequences_pass_through():
    model = EncoderDecoder(12, 9, embed_dim=D, num_heads=H).eval()
    assert model(_SRC[:0], _TGT[:0]).shape == (0, T, 9)
    assert FeedForward(D)(torch.randn(B, 0, D)).shape == (B, 0, D)


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
