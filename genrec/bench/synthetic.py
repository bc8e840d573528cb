"""A seeded synthetic catalog and interaction log of any size, with structure both content and
collaborative retrieval can find (what ``genrec bench scale`` measures on).

Items belong to topics; a topic's items share a category, a product noun and descriptor words in
their titles and tags (content search finds them), and a popularity that falls off like Zipf's
law. Titles are a brand and the product noun ("Sovena lip balm"), tagged with the topic's two
descriptors (colour, brand and price are attributes), so that a rank prompt has about the tokens
of the same prompt on ML-100K (a candidate line about 7 tokens, ML-100K's 6; a history line with
its tags 13, ML-100K's 16) and ``genrec bench scale``'s rank ratio compares catalog size, not
title length. Brands are made of
two or three consonant-vowel syllables (2 and 2.4 tokens), enough of them that titles repeat
only past 8,400 items per product noun.
Users like one to three topics and interact in short sessions: a run of consecutive items of one
topic's series (sequential and co-occurrence models find it), now and then a popular item from
anywhere. Everything follows from the seed, so two runs write the same files.

    python -m genrec.bench.synthetic --items 300000 --users 100000 --events 3000000 --out DIR

writes ``DIR/catalog.jsonl`` (``genrec ingest``) and ``DIR/log.csv`` (``genrec train``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CATEGORIES = {
    "Shoes": ["running shoes", "hiking boots", "sneakers", "sandals", "loafers", "slippers"],
    "Outdoor": ["tent", "sleeping bag", "backpack", "camping stove", "headlamp", "water filter"],
    "Kitchen": ["frying pan", "chef knife", "kettle", "blender", "coffee grinder", "rice cooker"],
    "Electronics": ["headphones", "bluetooth speaker", "power bank", "webcam", "keyboard", "mouse"],
    "Books": ["mystery novel", "cookbook", "travel guide", "poetry collection", "biography"],
    "Toys": ["puzzle", "building blocks", "plush bear", "board game", "kite", "model train"],
    "Garden": ["watering can", "pruning shears", "seed kit", "planter", "garden hose", "rake"],
    "Sports": ["yoga mat", "dumbbells", "tennis racket", "football", "cycling helmet", "jump rope"],
    "Beauty": ["face cream", "shampoo", "lip balm", "sunscreen", "hair dryer", "perfume"],
    "Home": ["desk lamp", "throw blanket", "wall clock", "storage box", "curtains", "rug"],
    "Clothing": ["rain jacket", "wool sweater", "denim jeans", "t-shirt", "hoodie", "scarf"],
    "Pets": ["dog leash", "cat tree", "pet bed", "bird feeder", "aquarium filter", "chew toy"],
}
DESCRIPTORS = (
    "waterproof lightweight classic compact vintage ergonomic organic wireless foldable "
    "insulated stainless premium eco-friendly handmade portable heavy-duty minimalist retro "
    "breathable cordless adjustable ceramic bamboo leather cotton merino titanium silicone "
    "scented unscented kids travel professional outdoor indoor smart solar"
).split()
COLOURS = "black white red blue green grey navy olive sand pink teal amber".split()
SYLLABLES = "ka lo mi ra tu ve so da ri be no ta ni ze to ma la pe go si".split()


@dataclass(frozen=True)
class Sizes:
    items: int
    users: int
    events: int
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.items, self.users, self.events) < 1:
            raise ValueError("items, users and events must be positive")

    @property
    def topics(self) -> int:
        return max(4, self.items // 600)


def _brands(rng: np.random.Generator) -> list[str]:
    """Every brand of two syllables (400), then every brand of three (8,000), each group
    shuffled by the seed: a noun's first items get the shorter names."""
    two = ["".join(p) for p in itertools.product(SYLLABLES, repeat=2)]
    three = ["".join(p) for p in itertools.product(SYLLABLES, repeat=3)]
    return [str(b).capitalize() for b in [*rng.permutation(two), *rng.permutation(three)]]


def _zipf_weights(n: int, s: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


def catalog(sizes: Sizes) -> tuple[list[dict], np.ndarray, list[np.ndarray]]:
    """(items, item -> topic, per topic: its items in series order, most popular first)."""
    rng = np.random.default_rng(sizes.seed)
    names = [(cat, noun) for cat, nouns in CATEGORIES.items() for noun in nouns]
    brands = _brands(rng)
    topic_noun = rng.integers(0, len(names), sizes.topics)
    first = rng.integers(0, len(DESCRIPTORS), sizes.topics)  # two different words a topic
    second = (first + 1 + rng.integers(0, len(DESCRIPTORS) - 1, sizes.topics)) % len(DESCRIPTORS)
    topic_words = np.stack([first, second], axis=1)
    item_topic = rng.permutation(np.arange(sizes.items) % sizes.topics)
    members = [np.flatnonzero(item_topic == t) for t in range(sizes.topics)]
    items = []
    seen_noun = np.zeros(len(names), dtype=np.int64)  # items so far per noun: distinct brands
    for i in range(sizes.items):
        t = item_topic[i]
        cat, noun = names[topic_noun[t]]
        words = [DESCRIPTORS[w] for w in topic_words[t]]
        brand = brands[seen_noun[topic_noun[t]] % len(brands)]
        seen_noun[topic_noun[t]] += 1
        colour = COLOURS[i % len(COLOURS)]
        items.append(
            {
                "id": f"p{i:07d}",
                "title": f"{brand} {noun}",
                "tags": words,
                "category": cat,
                "attributes": {"brand": brand, "colour": colour, "price": int(5 + (i * 37) % 300)},
            }
        )
    return items, item_topic, members


def log(sizes: Sizes, members: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user index, item index, timestamp) per event, users in order, each user's oldest first."""
    rng = np.random.default_rng(sizes.seed + 1)
    topic_pop = _zipf_weights(len(members), 0.8)
    global_items = rng.permutation(sizes.items)
    # Sequence lengths: lognormal, scaled so they add up to the events asked for (>= 2 each).
    raw = rng.lognormal(0.0, 0.8, sizes.users)
    lengths = np.maximum(2, np.round(raw / raw.sum() * sizes.events)).astype(np.int64)
    users, items = [], []
    for u, n in enumerate(lengths):
        likes = rng.choice(len(members), size=int(rng.integers(1, 4)), p=topic_pop)
        seq: list[np.ndarray] = []
        have = 0
        while have < n:
            if rng.random() < 0.15:  # a popular item from anywhere
                run = global_items[[min(int(rng.zipf(1.3)) - 1, sizes.items - 1)]]
            else:  # a session: consecutive items of a liked topic's series
                topic = members[likes[int(rng.integers(len(likes)))]]
                start = min(int(rng.zipf(1.2)) - 1, len(topic) - 1)
                length = int(rng.geometric(0.35))
                run = topic[(start + np.arange(length)) % len(topic)]
            seq.append(run)
            have += len(run)
        s = np.concatenate(seq)[:n]
        users.append(np.full(len(s), u, dtype=np.int64))
        items.append(s)
    user = np.concatenate(users)
    item = np.concatenate(items)
    # One event a minute per user, users starting at spread-out times.
    start = 1_600_000_000 + rng.integers(0, 30 * 86400, sizes.users)
    offset = np.arange(len(user)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    ts = start[user] + 60 * offset
    return user, item, ts


def write(out: Path, sizes: Sizes) -> dict:
    """Write ``catalog.jsonl`` and ``log.csv`` into ``out``; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    items, _, members = catalog(sizes)
    with (out / "catalog.jsonl").open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item) + "\n")
    user, item, ts = log(sizes, members)
    with (out / "log.csv").open("w", encoding="utf-8") as f:
        f.write("user_id,item_id,timestamp\n")
        step = 200_000
        for lo in range(0, len(user), step):
            rows = zip(user[lo : lo + step], item[lo : lo + step], ts[lo : lo + step], strict=True)
            f.write("".join(f"u{u},p{i:07d},{t}\n" for u, i, t in rows))
    return {
        "catalog": str(out / "catalog.jsonl"),
        "log": str(out / "log.csv"),
        "items": sizes.items,
        "users": sizes.users,
        "events": int(len(user)),
        "topics": sizes.topics,
        "seed": sizes.seed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sizes = Sizes(args.items, args.users, args.events, args.seed)
    print(json.dumps(write(args.out, sizes)), file=sys.stdout)


if __name__ == "__main__":
    main()
