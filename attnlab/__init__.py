r"""attnlab: the small teaching library behind the attention textbook.

One concept per module, each short enough to read beside its chapter:

- ``attnlab.functional``: score functions, masked softmax, scaled dot-product attention (chapter 1)
- ``attnlab.attention``: self-attention, multi-head attention, positional encodings (chapters 2, 3)
- ``attnlab.channel``: SE, ECA and CBAM's channel gate (chapter 4)
- ``attnlab.spatial``: CBAM's spatial gate, CBAM, spatial transformer, coordinate attention (chapter 5)
- ``attnlab.non_local``: the non-local block and its pairwise functions (chapter 6)
- ``attnlab.data``: offline data sets, generated or shipped inside packages (all chapters)
- ``attnlab.train``: a small, transparent fit loop (all chapters)
- ``attnlab.viz``: heatmaps, overlays, widgets and their static twins (all chapters)
- ``attnlab.exercises``: checkers for the numeric exercises
- ``attnlab.utils``: device choice, seeding, ``make_divisible`` (all chapters)

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
