"""LM engines behind one protocol (:mod:`genrec.engines.base`).

``make_engine(settings)`` picks the engine: the remote OpenAI-compatible vLLM server named by
``GENREC_ENGINE_URL``, else the embedded in-process vLLM engine with the default model (or
``GENREC_MODEL``). Engines are imported lazily: the remote one never imports vLLM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genrec.engines.base import Completion, Engine, LabelLogprobs
from genrec.settings import Settings

if TYPE_CHECKING:
    from genrec.engines.inprocess import InProcessEngine
    from genrec.engines.remote import RemoteEngine

__all__ = ["Completion", "Engine", "LabelLogprobs", "make_engine"]


def make_engine(settings: Settings) -> InProcessEngine | RemoteEngine:
    if settings.engine_url:
        from genrec.engines.remote import RemoteEngine

        return RemoteEngine(settings)
    from genrec.engines.inprocess import InProcessEngine

    return InProcessEngine(settings)
