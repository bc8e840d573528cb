"""The default model: converted once from the packaged GGUF, atomically, and reused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genrec.errors import ConfigError
from genrec.model_files import DEFAULT_MODEL_NAME, default_model_dir, model_path, packaged_gguf
from genrec.settings import Settings


def test_packaged_gguf_is_found():
    gguf = packaged_gguf()
    assert gguf.name.endswith(".gguf") and gguf.stat().st_size > 50_000_000


def test_default_model_is_converted_once_and_reused(settings):
    folder = default_model_dir(settings)
    assert folder == settings.models_dir / DEFAULT_MODEL_NAME
    marker = json.loads((folder / "genrec-model.json").read_text())
    assert marker["dtype"] == "bfloat16" and marker["source"].endswith(".gguf")
    assert (folder / "model.safetensors").stat().st_size > 200_000_000
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert (folder / "tokenizer.json").is_file()
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert default_model_dir(settings) == folder  # cached: not converted again
    assert (folder / "model.safetensors").stat().st_mtime_ns == before
    assert model_path(settings) == str(folder)


def test_genrec_model_points_elsewhere(settings, tmp_path: Path):
    converted = default_model_dir(settings)
    assert model_path(settings.model_copy(update={"model": str(converted)})) == str(converted)
    assert model_path(settings.model_copy(update={"model": "org/some-model"})) == "org/some-model"
    with pytest.raises(ConfigError) as info:
        model_path(settings.model_copy(update={"model": str(tmp_path)}))  # no config.json
    assert info.value.param == "model"


def test_killed_conversion_leaves_no_half_folder(tmp_path: Path):
    """Kill a conversion mid-way: the model folder must not exist (only a temporary folder may),
    and the next run would convert again rather than trust half a model."""
    env = {**os.environ, "GENREC_HOME": str(tmp_path), "GENREC_MODEL_CACHE": str(tmp_path / "m")}
    code = (
        "from genrec.model_files import default_model_dir\n"
        "from genrec.settings import Settings\n"
        "default_model_dir(Settings())"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    try:
        for line in proc.stderr:  # wait until the weights are being written or converted
            if "1/3" in line or "3/3" in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    models = tmp_path / "m"
    assert not (models / DEFAULT_MODEL_NAME).exists()
    leftovers = [p.name for p in models.iterdir() if p.is_dir()]
    assert all(name.startswith(f".{DEFAULT_MODEL_NAME}.") for name in leftovers)
    # model_path would convert again (and clear the leftovers under the lock) - not trust it.
    from genrec.model_files import _complete

    assert not _complete(models / DEFAULT_MODEL_NAME)
    assert Settings(home=tmp_path, model_cache=models).models_dir == models
