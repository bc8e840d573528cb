"""Datasets written for genrec and shipped inside it.

``zh-shop``: a Chinese e-commerce catalog (295 products: menswear, womenswear, children's wear,
shoes, electronics, home; category, tags and attributes season / material / size / gender / type)
and 94 Chinese queries with the products relevant to each (32 validation, 62 test). Both files
are written by ``eval/tools/build_zh_shop.py`` from its hand-written vocabularies; every
brand and product is invented.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def zh_shop_catalog() -> Path:
    return _HERE / "zh_shop.jsonl"


def zh_shop_queries() -> Path:
    return _HERE / "zh_shop_queries.jsonl"
