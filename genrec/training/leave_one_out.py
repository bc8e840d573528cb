"""SASRec's leave-one-out: the user vector, and one per recent history item left out.

What an item's SASRec evidence reads (genrec.explain): a history item's part in a score
``u . v`` is the drop when it is left out. The retriever computes these vectors in the pass that
makes the user vector itself (genrec.retrieval.learned), so the explanation reuses them.

In closed form for the one-layer encoder genrec trains by default:

A user vector is the encoder's output at the history's last position. With one attention layer
that output depends on an earlier item ``j`` only through the last position's attention, a
softmax-weighted sum of values: masking ``j`` out of it renormalises the other weights,

    o_without_j = (o - a_j v_j) / (1 - a_j)

so one pass over the history gives the user vector and every "item j left out" vector at once
(the rest of the layer, the projection, feed-forward and norms, runs on those few rows). This
is the score drop when ``j`` is removed from what the user vector reads, every other item kept
at its position. The last item is also the query and the residual, so it is taken out of the
history for real (a second pass over the rest). Both passes cost about what one forward does,
where a batched forward of 10 left-out histories costs 3.5x that (docs/explanations.md). Deeper
encoders mix items in earlier layers too: they take that batched forward.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import erf

from genrec.training.sequential import SASRec

LOO_ITEMS = 10  # the most recent history items tried left out (older ones barely move u)


@dataclass(frozen=True)
class LeftOut:
    items: list[int]  # the item index left out, one per row of ``vectors`` after the first
    vectors: np.ndarray  # (1 + len(items), hidden): the user vector, then each one left out


def closed_form(model: SASRec) -> bool:
    """Whether ``masked_user_vectors`` is exact for this model (one attention layer)."""
    return model.params.layers == 1


def leave_one_out(model: SASRec, history: Sequence[int]) -> LeftOut:
    """The user vector of ``history`` (item indices, oldest first) and, for each of its last
    ``LOO_ITEMS`` items, the vector without it."""
    window = list(history[-model.params.max_len :])
    tried = list(range(max(0, len(window) - LOO_ITEMS), len(window)))
    if closed_form(model):
        vectors = masked_user_vectors(model, window, tried)
    else:  # a few rows: one thread (SASRec.user_vectors)
        vectors = model.user_vectors([window] + [window[:j] + window[j + 1 :] for j in tried])
    return LeftOut([window[j] for j in tried], vectors)


class _Encoder:
    """The one-layer encoder's weights as float32 arrays, for the few rows a request computes:
    numpy's small products cost a fraction of torch's per-op overhead here (0.4-0.9 ms a request
    in torch at 300k), and they keep the GIL, where each torch op releases and retakes it, a
    wait of its own among concurrent requests."""

    def __init__(self, model: SASRec) -> None:
        net, block = model.net, model.net.blocks[0]

        def a(t: torch.Tensor) -> np.ndarray:
            return t.detach().numpy()  # a view of the float32 tensor's memory, not a copy

        def w(t: torch.Tensor) -> np.ndarray:  # a layer's weight, transposed for x @ w
            return np.ascontiguousarray(a(t).T)  # small; contiguous products are ~4 % faster

        self.table = a(net.item_table())  # row 0: the padding (zeros); no second table
        self.positions = a(net.positions.weight)
        self.ln1 = (a(block.ln1.weight), a(block.ln1.bias), block.ln1.eps)
        self.qkv = (w(block.qkv.weight), a(block.qkv.bias))
        self.proj = (w(block.proj.weight), a(block.proj.bias))
        self.ln2 = (a(block.ln2.weight), a(block.ln2.bias), block.ln2.eps)
        self.ff1 = (w(block.ff[0].weight), a(block.ff[0].bias))
        self.ff2 = (w(block.ff[3].weight), a(block.ff[3].bias))
        self.ln = (a(net.ln.weight), a(net.ln.bias), net.ln.eps)
        self.heads, self.max_len = model.params.heads, net.max_len

    @staticmethod
    def norm(x: np.ndarray, ln: tuple[np.ndarray, np.ndarray, float]) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + ln[2]) * ln[0] + ln[1]

    def ff(self, h: np.ndarray) -> np.ndarray:
        u = self.norm(h, self.ln2) @ self.ff1[0] + self.ff1[1]
        u = 0.5 * u * (1.0 + erf(u / np.sqrt(2.0)))  # exact GELU, as nn.GELU()
        return u @ self.ff2[0] + self.ff2[1]


_encoders: weakref.WeakKeyDictionary[SASRec, _Encoder] = weakref.WeakKeyDictionary()
_encoders_lock = threading.Lock()


def _encoder(model: SASRec) -> _Encoder:
    """The model's weights as arrays, made once per model (a serving model's never change)."""
    with _encoders_lock:
        enc = _encoders.get(model)
        if enc is None:
            enc = _encoders[model] = _Encoder(model)
        return enc


def _attend(enc: _Encoder, windows: Sequence[Sequence[int]]) -> tuple[np.ndarray, ...]:
    """For histories right-aligned as SASRec.user_vectors aligns them: the last position's
    residual input (b, d), attention weights (b, h, n), values (b, n, h, dh) and attention
    output (b, h, dh). An empty history is the padding alone, as it is there."""
    d, heads = enc.table.shape[1], enc.heads
    n = max(1, max(len(w) for w in windows))
    x = np.zeros((len(windows), n, d), dtype=np.float32)
    visible = np.zeros((len(windows), n), dtype=bool)
    for row, w in enumerate(windows):
        if len(w):
            x[row, n - len(w) :] = enc.table[np.asarray(w, dtype=np.int64) + 1]
            visible[row, n - len(w) :] = True
    x += enc.positions[enc.max_len - n : enc.max_len][None]
    qkv = enc.norm(x, enc.ln1) @ enc.qkv[0] + enc.qkv[1]
    q, k, v = (qkv.reshape(len(windows), n, 3, heads, d // heads)[:, :, i] for i in range(3))
    # the last position sees every real item and itself (causal; the net's mask)
    visible[:, -1] = True
    logits = np.einsum("bhd,bnhd->bhn", q[:, -1], k) / np.float32(d // heads) ** 0.5
    logits = np.where(visible[:, None, :], logits, -np.inf)
    a = np.exp(logits - logits.max(axis=-1, keepdims=True))
    a /= a.sum(axis=-1, keepdims=True)
    return x[:, -1], a, v, np.einsum("bhn,bnhd->bhd", a, v)


def masked_user_vectors(model: SASRec, window: Sequence[int], tried: Sequence[int]) -> np.ndarray:
    """(1 + len(tried), hidden) float32: the user vector of ``window`` (item indices, oldest
    first, at most max_len), then one per position in ``tried`` (ascending) without that
    item: an earlier item masked out of the last position's attention; the last item taken out
    of the history (it is also the query and the residual: masking would leave most of it)."""
    enc = _encoder(model)
    last = len(window) - 1
    x, a, v, o = _attend(enc, [window, window[:-1]] if last in tried else [window])
    earlier = np.asarray([j for j in tried if j != last], dtype=np.int64)
    aj = a[0][:, earlier].T[..., None]  # (m, h, 1)
    keep = 1.0 - aj
    with np.errstate(divide="ignore", invalid="ignore"):
        masked = (o[0][None] - aj * v[0][earlier]) / np.maximum(keep, 1e-6)
    masked = np.where(keep > 1e-6, masked, 0.0)  # all its attention
    # rows: the whole history, the earlier items masked, then the last item taken out
    residual = np.concatenate([np.repeat(x[:1], len(earlier) + 1, axis=0), x[1:]])
    attended = np.concatenate([o[:1], masked, o[1:]]).reshape(len(residual), -1)
    h = residual + attended @ enc.proj[0] + enc.proj[1]
    return enc.norm(h + enc.ff(h), enc.ln).astype(np.float32)
