r"""attnlab: the small teaching library behind the attention textbook.

One concept per module, each short enough to read beside its chapter. Mechanisms (torch only):

- ``attnlab.functional``: score functions, masked softmax and the book's one softmax-attention
  kernel, ``scaled_dot_product_attention`` (:ref:`chap-soft-lookup`)
- ``attnlab.attention``: self-attention, multi-head attention, positional encodings
  (:ref:`chap-self-attention`, :ref:`chap-multi-head-attention`)
- ``attnlab.channel``: SE, ECA and CBAM's channel gate (:ref:`chap-channel-attention`)
- ``attnlab.spatial``: CBAM's spatial gate, CBAM, spatial transformer, coordinate attention
  (:ref:`chap-spatial-attention`)
- ``attnlab.non_local``: the non-local block and its pairwise functions (:ref:`chap-non-local`)
- ``attnlab.axial``: row, column and axial attention over images
  (:ref:`chap-cost-and-inductive-bias`)
- ``attnlab.transformer``: cross-attention's seams (additive, summary), encoder and decoder
  layers, a tiny encoder-decoder (:ref:`chap-cross-attention`)
- ``attnlab.efficient``: the online softmax, separable (MobileViTv2) and linear attention
  (:ref:`chap-efficient-attention`)
- ``attnlab.rollout``: attention rollout and a tiny vision transformer with a [CLS] token
  (:ref:`chap-where-attention-looks`)
- ``attnlab.glimpse``: a glimpse sensor, the recurrent attention model and its REINFORCE loss
  (:ref:`chap-hard-attention`)
- ``attnlab.practice``: residual attention, C2f, RA-CNN's proposal, crop and ranking loss,
  decoupled mask loss, loss masking
  (:ref:`chap-residual-attention`, :ref:`chap-dense-attention`, :ref:`chap-scale-attention`)
- ``attnlab.positions``: positions inside attention: rotary embeddings (RoPE), ALiBi's linear
  biases and T5's bucketed relative bias, each through ``MultiHeadAttention``'s seam
  (:ref:`chap-positions`)
- ``attnlab.cache``: the key/value cache for decoding step by step (a rolling window, sinks)
  (:ref:`chap-generating`)
- ``attnlab.lm``: a tiny causal language model (pre-norm decoder blocks, any of the position
  schemes, grouped-query heads, a key/value cache, a sink logit, head ablation, ``generate``)
  (:ref:`chap-generating`)
- ``attnlab.induction``: the repeated-segment task, per-position losses, previous-token,
  prefix-matching and copying scores per head, head ablation masks (:ref:`chap-induction`)
- ``attnlab.checks``: the argument checks every mechanism shares

Helpers (they import the mechanisms, never the reverse):

- ``attnlab.data``: offline data sets, generated or shipped inside packages
- ``attnlab.train``: a small, transparent fit loop
- ``attnlab.viz``: heatmaps, overlays, widgets and their static twins
- ``attnlab.live``, ``attnlab.live_lm``: figures that compute in the rendered page (Vega-Lite)
- ``attnlab.report``: numbers for the prose (glue) and recorded learning targets
- ``attnlab.measure``: time, memory kept for backward, peak memory of a forward pass
- ``attnlab.exercises``: checkers for the exercises
- ``attnlab.utils``: device choice, seeding, ``make_divisible``

Shape letters, used in every docstring and shape comment (batch first, always):
B batch, T queries (target length), S keys/values (source length), D model width,
h heads, d width of one head, C channels, H height, W width, N = H*W positions.

Mask convention: a boolean mask is **True where a query may attend to a key**
(as in :func:`torch.nn.functional.scaled_dot_product_attention`); a float mask is added
to the scores. A query whose keys are all masked gets weights of zero, never NaN.
"""
from attnlab.utils import count_parameters, get_device, make_divisible, seed_everything

__version__ = "0.1.0"
__all__ = ["get_device", "seed_everything", "make_divisible", "count_parameters", "__version__"]
