"""SASRec that reads the items' text vectors (genrec.index.item_vectors): ``sasrec_text``.

Two uses, chosen by ``settings.sasrec_text`` on validation (docs/semantic-encoding.md):

- ``adapter`` (LLM-ESR's dual view): each item's embedding is its learned ID vector plus a
  learned linear projection of its frozen text vector. Items that share words and genres start
  close and stay tied through the projection, which is what an item with few interactions lacks.
- ``init``: the ID vectors start as a PCA projection of the text vectors (scaled to SASRec's own
  initial spread) and are then trained as usual.

Either way, after training the net is baked into a plain SASRec (item table = ID + projection),
so serving, the bundle format and the item vectors in Chroma are exactly SASRec's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from genrec.training.sequential import SASRec, SASRecParams, _Net

INIT_STD = 0.02  # SASRec's own initial spread of the ID vectors


def pca(vectors: np.ndarray, dim: int) -> np.ndarray:
    """(n, dim) projection of the centred rows on their top principal directions, scaled so
    every entry has spread INIT_STD."""
    x = vectors.astype(np.float64) - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    out = x @ vt[: min(dim, vt.shape[0])].T
    if out.shape[1] < dim:  # fewer text dimensions than hidden: pad with zeros
        out = np.pad(out, ((0, 0), (0, dim - out.shape[1])))
    return (out * (INIT_STD / max(float(out.std()), 1e-12))).astype(np.float32)


class TextNet(_Net):
    """SASRec's network whose item table is ID vectors + a projection of frozen text vectors."""

    def __init__(self, n_items: int, p: SASRecParams, text: np.ndarray, mode: str) -> None:
        super().__init__(n_items, p)
        if text.shape[0] != n_items:
            raise ValueError(f"text vectors for {text.shape[0]} items, the model has {n_items}")
        self.mode = mode
        if mode == "init":
            with torch.no_grad():
                self.items.weight[1:] = torch.from_numpy(pca(text, p.hidden))
            self.adapter = None
        elif mode == "adapter":
            padded = np.vstack([np.zeros((1, text.shape[1]), np.float32), text])
            self.register_buffer("text", torch.from_numpy(padded.astype(np.float32)))
            self.adapter = nn.Linear(text.shape[1], p.hidden, bias=False)
            nn.init.normal_(self.adapter.weight, std=INIT_STD)
        else:
            raise ValueError(f"unknown text mode {mode!r}: adapter or init")

    def item_table(self) -> torch.Tensor:
        if self.adapter is None:
            return self.items.weight
        return self.items.weight + self.adapter(self.text)

    def baked(self, n_items: int, p: SASRecParams) -> _Net:
        """A plain SASRec network with this one's weights and the combined item table."""
        plain = _Net(n_items, p)
        extra = ("adapter", "text")
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(extra)}
        with torch.no_grad():
            state["items.weight"] = self.item_table().detach().clone()
        plain.load_state_dict(state)
        plain.eval()
        return plain


def fit_text_sasrec(
    sequences: Sequence[Sequence[int]],
    n_items: int,
    text: np.ndarray,
    mode: str,
    params: SASRecParams,
    *,
    seed: int = 0,
    **fit_args: Any,
) -> tuple[SASRec, dict]:
    """SASRec.fit with a :class:`TextNet`; the returned model is a plain (baked) SASRec."""
    torch.manual_seed(seed)
    net = TextNet(n_items, params, np.asarray(text, dtype=np.float32), mode)
    model, report = SASRec.fit(sequences, n_items, params, seed=seed, net=net, **fit_args)
    assert isinstance(model.net, TextNet)
    model.net = model.net.baked(n_items, params)
    report["text"] = {"mode": mode, "text_dim": int(text.shape[1])}
    return model, report
