"""Grounding LM text to catalog IDs, over the real ML-100K index (no LM needed)."""

from __future__ import annotations

import pytest

from genrec.grounding import Grounder, ground_description, normalize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Godfather (1972)", "godfather"),
        ("Godfather, The", "godfather"),
        ("  GODFATHER!! ", "godfather"),
        ("Amélie", "amelie"),
        ("Star Wars: Episode IV", "star wars episode iv"),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.fixture(scope="module")
def candidates(ml100k_index):
    # Godfather, Godfather II, Star Wars, Return of the Jedi, Toy Story, Heat
    return ml100k_index.get(["127", "187", "50", "181", "1", "273"])


def test_the_steps_in_order(ml100k_index, candidates):
    g = Grounder(candidates, catalog=ml100k_index, embedding_scope="catalog")
    exact = g.ground("Godfather, The")
    assert (exact.item.id, exact.grounded_by, exact.confidence) == ("127", "exact", 1.0)
    norm = g.ground("the godfather (1972)")
    assert (norm.item.id, norm.grounded_by) == ("127", "normalized")
    fuzzy = g.ground("Godfathr Part II")
    assert (fuzzy.item.id, fuzzy.grounded_by) == ("187", "fuzzy")
    assert 0.88 <= fuzzy.confidence < 1.0
    # Not a candidate title at all: the nearest catalog item by embedding, if close enough.
    emb = g.ground("Toy Story 2")
    assert emb is not None and emb.grounded_by == "embedding" and 0 < emb.confidence <= 1
    assert g.ground("zxqv wpfl") is None  # matches nothing: never turned into an ID


def test_candidate_scope_never_leaves_the_candidates(ml100k_index, candidates):
    g = Grounder(candidates, catalog=ml100k_index, embedding_scope="candidates")
    # Toy Story is a candidate: the description grounds to it, by embedding.
    m = g.ground("an animated film about toys that come alive")
    assert m is not None and (m.item.id, m.grounded_by) == ("1", "embedding")
    # Toy Story 2 is not in ML-100K, and the catalog scope would find a neighbour outside the
    # candidates; the candidate scope may only answer with a candidate (here: Toy Story).
    near = g.ground("Toy Story 2")
    assert near is not None and near.item.id == "1"


def test_ground_all_counts_duplicates_and_unmatched(ml100k_index, candidates):
    g = Grounder(candidates, catalog=ml100k_index, banned={"50"})
    out = g.ground_all(
        ["Heat", "heat", "Star Wars", "qqqq zzzz", "Toy Story", "Return of the Jedi"], k=3
    )
    assert [m.item.id for m in out.matches] == ["273", "1", "181"]
    assert out.duplicates == 2  # "heat" again, and the banned (history) Star Wars
    assert out.unmatched == ["qqqq zzzz"]


def test_shown_titles_ground_exactly(ml100k_index, candidates):
    shown = [f"{c.title} #{i}" for i, c in enumerate(candidates)]
    g = Grounder(candidates, shown)
    assert g.ground(shown[2]).item.id == candidates[2].id
    assert g.ground(shown[2]).grounded_by == "exact"


def test_ground_description_searches_the_whole_catalog(ml100k_index):
    matches = ground_description(
        ml100k_index, "a space opera with jedi knights and the empire", 5, banned={"50", "172"}
    )
    ids = [m.item.id for m in matches]
    assert len(ids) == 5 == len(set(ids)) and not {"50", "172"} & set(ids)
    assert all(m.grounded_by == "embedding" for m in matches)
    assert "181" in ids  # Return of the Jedi
