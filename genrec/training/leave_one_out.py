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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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


def _attend(model: SASRec, windows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
    """For histories right-aligned as SASRec.user_vectors aligns them: the last position's
    residual input (b, d), attention weights (b, h, n), values (b, n, h, dh) and attention
    output (b, h, dh). An empty history is the padding alone, as it is there."""
    net, block = model.net, model.net.blocks[0]
    d, heads = model.params.hidden, model.params.heads
    n = max(1, max(len(w) for w in windows))
    seq = torch.zeros(len(windows), n, dtype=torch.long)
    for row, w in enumerate(windows):
        if len(w):
            seq[row, n - len(w) :] = torch.as_tensor(np.asarray(w, dtype=np.int64) + 1)
    x = F.embedding(seq, net.item_table(), padding_idx=0)
    x = x + net.positions(torch.arange(net.max_len - n, net.max_len))[None]
    q, k, v = block.qkv(block.ln1(x)).view(len(windows), n, 3, heads, d // heads).unbind(2)
    # the last position sees every real item and itself (causal; the net's mask)
    visible = seq != 0
    visible[:, -1] = True
    logits = torch.einsum("bhd,bnhd->bhn", q[:, -1], k) / float(d // heads) ** 0.5
    a = torch.softmax(logits.masked_fill(~visible[:, None, :], float("-inf")), dim=-1)
    return x[:, -1], a, v, torch.einsum("bhn,bnhd->bhd", a, v)


def masked_user_vectors(model: SASRec, window: Sequence[int], tried: Sequence[int]) -> np.ndarray:
    """(1 + len(tried), hidden) float32: the user vector of ``window`` (item indices, oldest
    first, at most max_len), then one per position in ``tried`` (ascending) without that
    item: an earlier item masked out of the last position's attention; the last item taken out
    of the history (it is also the query and the residual: masking would leave most of it).
    On one thread, as SASRec.user_vectors runs a request: ops this small only wait for a
    second one (a 50 x 64 layer norm took 7 ms on 2 threads of a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per calling thread: other threads keep theirs
    try:
        return _masked(model, window, tried)
    finally:
        torch.set_num_threads(threads)


@torch.inference_mode()
def _masked(model: SASRec, window: Sequence[int], tried: Sequence[int]) -> np.ndarray:
    block, net = model.net.blocks[0], model.net
    last = len(window) - 1
    x, a, v, o = _attend(model, [window, window[:-1]] if last in tried else [window])
    earlier = torch.as_tensor([j for j in tried if j != last], dtype=torch.long)
    aj = a[0][:, earlier].T[..., None]  # (m, h, 1)
    keep = 1.0 - aj
    masked = (o[0][None] - aj * v[0][earlier]) / keep.clamp_min(1e-6)
    masked = torch.where(keep > 1e-6, masked, torch.zeros_like(masked))  # all its attention
    # rows: the whole history, the earlier items masked, then the last item taken out
    residual = torch.cat([x[:1].expand(len(earlier) + 1, -1), x[1:]])
    attended = torch.cat([o[:1], masked, o[1:]]).reshape(len(residual), -1)
    h = residual + block.proj(attended)
    return net.ln(h + block.ff(block.ln2(h))).numpy()
