"""Session fixtures for the generative core: ONE real in-process vLLM engine with the real default
model (SmolLM2-135M-Instruct, converted once into the shared model cache) for the whole test
session, inside a real Recommender over the catalog fixtures' ML-100K index.

Other areas use ``recommender`` (a started :class:`genrec.recommender.Recommender`); its
``engine``, ``index``, ``tokenizer`` and ``prompts`` are there for tests that need the parts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from genrec.index import CatalogIndex
from genrec.recommender import Recommender
from genrec.settings import Settings


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def recommender(settings: Settings, ml100k_index: CatalogIndex) -> AsyncIterator[Recommender]:
    """A started Recommender (in-process engine, default model, ML-100K), shut down at the end."""
    async with Recommender(settings, index=ml100k_index) as rec:
        yield rec


def sharing(recommender: Recommender, **updates: object) -> Recommender:
    """Another Recommender with some settings changed, on the session's index, tokenizer and
    running engine (nothing new starts)."""
    return Recommender(
        recommender.settings.model_copy(update=updates),
        index=recommender.index,
        engine=recommender.engine,
        tokenizer=recommender.tokenizer,
    )
