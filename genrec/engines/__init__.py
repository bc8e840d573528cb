"""LM engines behind one protocol (:mod:`genrec.engines.base`).

``make_engine(settings)`` picks the engine: the remote OpenAI-compatible vLLM server named by
``GENREC_ENGINE_URL``, else the embedded in-process vLLM engine with the default model (or
``GENREC_MODEL``). Engines are imported lazily: the remote one never imports vLLM.

Which settings belong to the engine is said once, on the settings fields themselves
(``engine="outputs"`` for those that change what the engine answers, ``engine="runtime"`` for
those that only change how it runs); :func:`engine_settings` and :func:`engine_identity` are
derived from those marks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrec.engines.base import (
    Choice,
    Constraint,
    Engine,
    EngineRequest,
    EngineResult,
    Labels,
    Regex,
)
from genrec.engines.hardware import resolve_dtype
from genrec.settings import Settings

if TYPE_CHECKING:
    from genrec.engines.inprocess import InProcessEngine
    from genrec.engines.remote import RemoteEngine

__all__ = [
    "Choice",
    "Constraint",
    "Engine",
    "EngineRequest",
    "EngineResult",
    "Labels",
    "Regex",
    "engine_identity",
    "engine_runtime",
    "engine_settings",
    "make_engine",
]


def make_engine(settings: Settings) -> InProcessEngine | RemoteEngine:
    if settings.engine_url:
        from genrec.engines.remote import RemoteEngine

        return RemoteEngine(settings)
    from genrec.engines.inprocess import InProcessEngine

    return InProcessEngine(settings)


def engine_runtime(engine: object) -> dict[str, Any]:
    """How an engine runs (dtype, thread binding), for /health and the bench. A remote engine's
    binding belongs to its server (``vllm serve`` reads VLLM_CPU_OMP_THREADS_BIND itself)."""
    info = getattr(engine, "runtime_info", None)
    if callable(info):
        return info()
    return {"engine": "remote", "url": getattr(engine, "base_url", None)}


def _marked(kinds: tuple[str, ...]) -> list[str]:
    return [
        name
        for name, f in Settings.model_fields.items()
        if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("engine") in kinds
    ]


def engine_settings(settings: Settings) -> dict[str, Any]:
    """Every setting of the engine itself: two Settings with equal values can share one engine."""
    return {name: getattr(settings, name) for name in _marked(("outputs", "runtime"))}


def engine_identity(settings: Settings) -> dict[str, Any]:
    """What an engine's outputs depend on besides the request: the settings marked
    ``engine="outputs"``, with the model named so that two different folders differ (a local
    folder by its resolved path, a name as given, the packaged default by its name). Used as the
    engine cache's key and in the evaluation fingerprint; touches no engine, converts no model."""
    identity = {name: getattr(settings, name) for name in _marked(("outputs",))}
    if not settings.engine_url:  # in process, "auto" is whatever this machine runs
        identity["dtype"] = resolve_dtype(settings.dtype)
    if settings.model:
        local = Path(settings.model).expanduser()
        identity["model"] = str(local.resolve()) if local.exists() else settings.model
        if local.is_dir():  # a folder retrained in place (genrec finetune --out) is another model
            identity["weights"] = sorted(
                (f.name, f.stat().st_size, f.stat().st_mtime_ns)
                for f in local.glob("*.safetensors")
            )
    else:
        from genrec.model_files import DEFAULT_MODEL_NAME

        identity["model"] = f"default:{DEFAULT_MODEL_NAME}"
    return identity
