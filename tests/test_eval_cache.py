"""The engine identity that keys the output cache and the evaluation fingerprint."""

from __future__ import annotations

from genrec.engines import engine_identity
from genrec.settings import Settings


def test_identity_tells_checkpoints_and_engine_settings_apart(tmp_path):
    a, b = tmp_path / "run1" / "final", tmp_path / "run2" / "final"  # same display name
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    base = Settings(home=tmp_path / "home")
    ida = engine_identity(base.model_copy(update={"model": str(a)}))
    idb = engine_identity(base.model_copy(update={"model": str(b)}))
    assert ida != idb and ida["model"] == str(a.resolve())
    for field, value in (("dtype", "float16"), ("max_model_len", 1024), ("max_logprobs", 5)):
        assert engine_identity(base.model_copy(update={field: value})) != engine_identity(base)
    # Settings that do not change outputs leave it alone; it is stable and JSON-friendly.
    assert engine_identity(base.model_copy(update={"kv_cache_gib": 2.0})) == engine_identity(base)
    assert engine_identity(base)["model"] == "default:SmolLM2-135M-Instruct"


def test_a_folder_retrained_in_place_is_another_model(tmp_path):
    """genrec finetune --out replaces the folder: cached answers of the old weights must miss."""
    import os

    folder = tmp_path / "ranker"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"old weights")
    settings = Settings(home=tmp_path / "home", model=str(folder))
    before = engine_identity(settings)
    assert engine_identity(settings) == before  # stable while nothing changes
    weights.write_bytes(b"new weights!")
    os.utime(weights, ns=(1, 1))
    assert engine_identity(settings) != before
