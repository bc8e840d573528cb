"""Item vectors from the served LM: mean-pooled hidden states of each item's text.

The "semantic encoding" step of LLM-ESR / LLMEmb / AlphaRec: the language model that ranks
(SmolLM2-135M-Instruct by default, a local Hugging Face folder) reads each item's text (title
and genres, :meth:`Item.embedding_text`) once; the hidden states of one layer (the last by
default), averaged over the text's tokens and L2-normalised, are the item's vector (576 numbers
for SmolLM2). Only the transformer body runs (``AutoModel``: no vocabulary head), in batches of
texts of similar length, under ``torch.inference_mode``.

A folder transformers cannot load, or whose model returns no hidden states (an ONNX export, a
GGUF-only folder, a model type without ``output_hidden_states``), is a ConfigError naming the
folder. The vectors are cached per catalog digest and model by :mod:`genrec.index.item_vectors`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrec.errors import ConfigError

# bf16 matmuls on Zen 4 (AVX-512 BF16) are ~2x fp32; measured for 3,650 MovieLens titles: see
# docs/semantic-encoding.md. Hidden states are pooled in float32 either way.
DEFAULT_DTYPE = "bfloat16"
BATCH_SIZE = 32


def model_fingerprint(folder: Path) -> str:
    """A short digest of the model's config and its weight files' names and sizes: a vector set
    made by another model (or another conversion of it) never passes for this one."""
    h = hashlib.sha1()
    config = folder / "config.json"
    if config.is_file():
        h.update(config.read_bytes())
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        h.update(f"{path.name}:{path.stat().st_size}\n".encode())
    return h.hexdigest()[:12]


class LMEncoder:
    """Mean-pooled hidden states of ``layer`` (negative: from the end; -1 = last) of the causal
    LM in ``folder``, L2-normalised. Loads the model on first use."""

    def __init__(self, folder: str | Path, *, layer: int = -1, dtype: str = DEFAULT_DTYPE) -> None:
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir() or not (self.folder / "config.json").is_file():
            raise ConfigError(
                f"{self.folder} is not a Hugging Face model folder (no config.json): item "
                f"vectors from the LM need the served model's folder (GENREC_MODEL)",
                param="model",
            )
        if dtype not in ("bfloat16", "float32"):
            raise ConfigError(f"LM vectors dtype {dtype!r}: use bfloat16 or float32")
        self.layer = layer
        self.dtype = dtype
        self.model_id = (
            f"lm:{self.folder.name}:{model_fingerprint(self.folder)}:layer{layer}:mean:{dtype}"
        )
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never reach for a hub
        import torch
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            model = AutoModel.from_pretrained(
                str(self.folder), dtype=getattr(torch, self.dtype), local_files_only=True
            )
        except Exception as exc:  # noqa: BLE001 - any load failure names the folder
            raise ConfigError(
                f"cannot load {self.folder} with transformers to compute item vectors from its "
                f"hidden states ({type(exc).__name__}: {exc}); point GENREC_MODEL at a local "
                f"Hugging Face causal-LM folder",
                param="model",
            ) from exc
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        model.eval()
        self._model, self._tokenizer = model, tokenizer

    @property
    def dimension(self) -> int:
        self._load()
        return int(self._model.config.hidden_size)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = BATCH_SIZE, progress: Any = None
    ) -> np.ndarray:
        """(len(texts), hidden) float32, unit rows; texts batched by length (little padding)."""
        import torch

        self._load()
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=128,
                    return_tensors="pt",
                )
                result = self._model(**batch, output_hidden_states=True)
                states = getattr(result, "hidden_states", None)
                if not states:
                    raise ConfigError(
                        f"the model in {self.folder} returns no hidden states "
                        f"(output_hidden_states=True gave none); item vectors need a "
                        f"transformers model that exposes them",
                        param="model",
                    )
                try:
                    h = states[self.layer].float()
                except IndexError:
                    raise ConfigError(
                        f"layer {self.layer} is out of range for {self.folder} "
                        f"({len(states)} hidden-state layers)",
                        param="lm_vectors_layer",
                    ) from None
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[rows] = pooled.numpy()
                if progress is not None:
                    progress(min(start + batch_size, len(order)), len(order))
        return out

    def describe(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "folder": str(self.folder), "layer": self.layer}
