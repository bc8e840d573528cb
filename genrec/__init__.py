"""genrec: a generative recommendation agent.

A causal LM hosted by vLLM recommends items from a Chroma catalog::

    from genrec import Recommender, RecommendRequest, Settings

    async with Recommender(Settings.load()) as rec:
        result = await rec.recommend(RecommendRequest(history=["50", "172"], k=5))

The public API is what ``__all__`` lists; the modules behind it are implementation detail.
"""

from genrec.data.item import Item
from genrec.errors import (
    CatalogBusy,
    CatalogError,
    ConfigError,
    EngineError,
    GenrecError,
    InvalidRequest,
    NotFound,
    PromptTooLong,
    RateLimited,
    StoreUnavailable,
)
from genrec.events import Event, RecordResult
from genrec.index import CatalogIndex
from genrec.recommender import Recommender
from genrec.schema import Recommendation, RecommendedItem, RecommendRequest, Timings, Usage
from genrec.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "CatalogBusy",
    "CatalogError",
    "CatalogIndex",
    "ConfigError",
    "EngineError",
    "Event",
    "GenrecError",
    "InvalidRequest",
    "Item",
    "NotFound",
    "PromptTooLong",
    "RateLimited",
    "Recommendation",
    "RecommendRequest",
    "RecommendedItem",
    "Recommender",
    "RecordResult",
    "Settings",
    "StoreUnavailable",
    "Timings",
    "Usage",
    "__version__",
]
