"""A static embedder distilled from the packaged MiniLM: a vector per token, no transformer at
embedding time, for catalogs too big to embed with the full model quickly.

The recipe is Model2Vec's (Tulkens & van Dongen, 2024) in its simplest form, computed here once
and cached, so it needs no download: every token of MiniLM's vocabulary goes through the full
model on its own (``[CLS] token [SEP]``, mean-pooled and normalised, as an item text is); a text's
vector is then the mean of its tokens' vectors, each weighted down by how common the token is
(smooth inverse frequency, ``a / (a + p)``, with ``p`` from Zipf's law over the vocabulary's
order, which for BERT's WordPiece vocabulary follows frequency from its first word on), and
normalised. Embedding costs a tokenizer call and a weighted sum: about a hundredth of the int8
model's CPU. It reads words, not their order or context, so it is coarser than the full model;
``python -m genrec.bench.embedders`` measures both on ml-latest-small (docs/ingest.md).

The table (vocabulary x 384, float32, ~47 MB) is written under ``settings.models_dir/embeddings``
through a temporary file and a rename, under a file lock, as the ONNX graphs are.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from genrec.embeddings_onnx import OnnxEncoder, _fingerprint, _tokenizer
from genrec.errors import ConfigError
from genrec.model_files import made_once, say

_FORMAT = 1  # bump when the recipe changes, so stale tables are rebuilt
SIF_A = 1e-4  # Model2Vec's default smoothing: the commonest words weigh ~0, rare ones ~1
_FIRST_WORD = "the"  # BERT's vocabulary is in frequency order from its first whole word on


class StaticEncoder:
    """Token table plus the model's own tokenizer; thread-safe for ``encode``."""

    batch_size = 1024  # no model to feed: bigger batches only amortise numpy's per-call cost

    def __init__(self, folder: Path, cache_dir: Path):
        self.tokenizer = _tokenizer(folder)
        path = static_table(folder, cache_dir)
        self.table = np.load(path, mmap_mode=None)  # (vocabulary, dim), rows pre-weighted
        self.dimension = int(self.table.shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors: the weighted mean of each text's token rows (special
        and padding tokens have zero rows)."""
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        summed = self.table[ids].sum(axis=1)
        norms = np.linalg.norm(summed, axis=1, keepdims=True)
        return (summed / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def static_table(folder: Path, cache_dir: Path) -> Path:
    """The ``.npy`` token table for this model folder, distilled first when it is not there."""
    target = cache_dir / "embeddings" / f"static-{_FORMAT}-{_fingerprint(folder)}.npy"

    def make(tmp: Path) -> None:
        started = time.monotonic()
        say(f"distilling a static token table from {folder} (once only, under a minute)")
        table = distil(folder, cache_dir)
        with tmp.open("wb") as fh:
            np.save(fh, table)
        say(f"static token table ready in {time.monotonic() - started:.0f} s: {target}")

    return made_once(target, make)


def distil(folder: Path, cache_dir: Path, *, batch: int = 512) -> np.ndarray:
    """(vocabulary, dim) float32: each token's vector from the full model, times its SIF weight;
    zero rows for the special tokens (they carry no meaning of the text)."""
    model = OnnxEncoder(folder, cache_dir)
    tok = model.tokenizer
    size = tok.get_vocab_size()
    cls_id, sep_id = _special(tok, "[CLS]"), _special(tok, "[SEP]")
    out = np.zeros((size, model.dimension), dtype=np.float32)
    for lo in range(0, size, batch):
        ids = np.arange(lo, min(lo + batch, size), dtype=np.int64)
        seq = np.stack([np.full_like(ids, cls_id), ids, np.full_like(ids, sep_id)], axis=1)
        (vectors,) = model.session.run(
            None, {"input_ids": seq, "attention_mask": np.ones_like(seq)}
        )
        out[lo : lo + len(ids)] = vectors
    out *= sif_weights(tok)[:, None]
    special = [tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")]
    out[[i for i in special if i is not None]] = 0.0
    return out


def sif_weights(tok: object) -> np.ndarray:
    """``a / (a + p(rank))`` per token, ``p`` by Zipf's law; tokens before the first word
    (punctuation, single characters, unused slots) count as the commonest."""
    size = tok.get_vocab_size()  # type: ignore[attr-defined]
    first = tok.token_to_id(_FIRST_WORD)  # type: ignore[attr-defined]
    rank = np.maximum(np.arange(size, dtype=np.float64) - (first or 0) + 1, 1.0)
    p = 1.0 / (rank * np.log(size))  # Zipf, normalised over the vocabulary (harmonic ~ ln N)
    return (SIF_A / (SIF_A + p)).astype(np.float32)


def _special(tok: object, token: str) -> int:
    found = tok.token_to_id(token)  # type: ignore[attr-defined]
    if found is None:
        raise ConfigError(f"the tokenizer has no {token} token: not a BERT-style model")
    return int(found)
