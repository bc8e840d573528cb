"""The embedding model on both backends: ONNX Runtime (the default) and sentence-transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from genrec.data.catalog_files import load_dataset
from genrec.embeddings import Embedder, packaged_model_path
from genrec.embeddings_onnx import OnnxEncoder, unsupported_reason
from genrec.errors import ConfigError
from genrec.settings import Settings


@pytest.fixture(scope="module")
def torch_embedder(settings: Settings) -> Embedder:
    return Embedder(settings, backend="torch")


def test_the_packaged_model_runs_on_onnx(embedder: Embedder):
    assert unsupported_reason(packaged_model_path()) is None
    assert embedder.backend == "onnx" and embedder.dimension == 384


def test_onnx_and_torch_give_the_same_vectors(embedder: Embedder, torch_embedder: Embedder):
    texts = [item.embedding_text() for item in load_dataset("ml-100k")[:300]]
    texts += ["", "x", "a very long description " * 200]  # empty, one token, truncated at 256
    onnx, torch = embedder.encode(texts), torch_embedder.encode(texts)
    assert torch_embedder.backend == "torch"
    assert onnx.shape == torch.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    assert (onnx * torch).sum(axis=1).min() > 0.9999


def test_the_graph_is_exported_once_and_shared(settings: Settings, embedder: Embedder):
    encoder = embedder.encoder
    assert isinstance(encoder, OnnxEncoder)
    stamp = encoder.graph.stat().st_mtime_ns
    fresh = Embedder(settings)
    assert not fresh.loaded
    fresh.encode(["another process, the same graph"])
    assert fresh.encoder.graph == encoder.graph
    assert encoder.graph.stat().st_mtime_ns == stamp  # reused, not exported again
    leftovers = [p.name for p in encoder.graph.parent.iterdir() if p.suffix != ".lock"]
    # beside it only other models' finished files (the int8 graph, the static token table)
    assert encoder.graph.name in leftovers
    assert all(n.endswith((".onnx", ".npy")) for n in leftovers)
    assert not [n for n in leftovers if n.startswith(".")]  # no half-written graph


def cls_pooled_copy(tmp_path: Path) -> Path:
    """The packaged model with CLS pooling: a model the ONNX recipe does not cover."""
    folder = tmp_path / "cls-minilm"
    shutil.copytree(packaged_model_path(), folder)
    config_path = folder / "1_Pooling" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    config_path.write_text(json.dumps(config))
    return folder


def test_other_models_fall_back_to_torch(tmp_path: Path, settings: Settings, embedder: Embedder):
    folder = cls_pooled_copy(tmp_path)
    assert "pooling" in unsupported_reason(folder)
    cls = Embedder(settings, model_path=folder)
    assert cls.backend == "torch"
    texts = ["Toy Story (1995)", "Heat (1995)", "a film about wine"]
    # the folder's own pooling is honoured, not silently replaced by mean pooling
    assert (cls.encode(texts) * embedder.encode(texts)).sum(axis=1).min() < 0.99

    forced = Embedder(settings, model_path=folder, backend="onnx")
    with pytest.raises(ConfigError, match="pooling.*GENREC_EMBEDDING_BACKEND=torch"):
        forced.encode(["x"])


def test_the_backend_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("GENREC_EMBEDDING_BACKEND", "torch")
    assert Embedder(Settings(home=tmp_path)).requested_backend == "torch"
    monkeypatch.setenv("GENREC_EMBEDDING_BACKEND", "tensorflow")
    with pytest.raises(ValueError, match="embedding_backend"):
        Settings(home=tmp_path)
