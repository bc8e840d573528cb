"""The stated-need protocol: cases from a tags file, no leakage into training, the parts, the
skips, the suite's checks; one small real run (real Chroma, real engine) over the three inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from genrec.errors import CatalogError, ConfigError
from genrec.evaluation.prepare import RunOptions, prepare
from genrec.evaluation.retrievers import training_sequences
from genrec.evaluation.runner import run
from genrec.evaluation.statedneed import read_tags
from genrec.evaluation.suite import load_suite
from genrec.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
ML_SMALL = ROOT.parent / "shared" / "data" / "ml-latest-small"
needs_ml_small = pytest.mark.skipif(
    not (ML_SMALL / "tags.csv").is_file(), reason=f"{ML_SMALL} is not available"
)
GENRES = ["Sci-Fi", "Comedy", "Drama", "Horror", "Romance"]


def folder(tmp: Path, tags: list[tuple[str, str, str, int]]) -> Path:
    """A tiny MovieLens folder: 30 movies, six users who never tag, three taggers."""
    d = tmp / "ml"
    d.mkdir()
    movies = [f"{m},Film {m} ({1990 + m}),{GENRES[m % 5]}" for m in range(1, 31)]
    (d / "movies.csv").write_text("movieId,title,genres\n" + "\n".join(movies) + "\n")
    ratings = [(u, m, 100 * m + u) for u in range(1, 7) for m in range(1, 31) if (m + u) % 3]
    ratings += [(10, 1, 100), (10, 2, 200), (10, 3, 300), (10, 5, 500)]
    ratings += [(11, 7, 100), (11, 8, 200)]
    ratings += [(12, m, 10 * m) for m in range(1, 31)]
    rows = [f"{u},{m},4.0,{t}" for u, m, t in ratings]
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n")
    tag_rows = [f"{u},{m},{t},{when}" for u, m, t, when in tags]
    (d / "tags.csv").write_text("userId,movieId,tag,timestamp\n" + "\n".join(tag_rows) + "\n")
    return d


TAGS = [
    ("10", "3", "space", 250),  # tagged before rated: the history is what came before 250
    ("10", "3", "robots", 260),
    ("10", "3", "Space", 270),  # a repeat (case aside) is dropped
    ("10", "4", "quiet drama", 450),  # tagged, never rated
    ("11", "99", "lost", 300),  # movieId not in movies.csv
    ("11", "7", "early", 50),  # before any rating: empty history
    ("77", "1", "stranger", 10),  # userId not in ratings.csv
    *[("12", str(m), f"tag {m}", 10 * m + 5) for m in range(2, 27)],  # 25 groups: capped
]


def suite_file(tmp: Path, data: Path, **protocol: object) -> Path:
    extra = "".join(f"  {k}: {v}\n" for k, v in protocol.items())
    path = tmp / "suite.yaml"
    path.write_text(
        f"name: need\ndataset: {{format: movielens, path: {data}}}\n"
        "protocol:\n  split: stated-need\n  inputs: [history, query, both]\n"
        + extra
        + "candidates: 5\nks: [1, 5]\nmatrix:\n  - templates: [rank_default]\n    modes: [rank]\n"
    )
    return path


def prepared_for(tmp: Path, data: Path, **protocol: object):
    tmp.mkdir(exist_ok=True)
    suite = load_suite(suite_file(tmp, data, **protocol))
    return prepare(suite, Settings(), RunOptions(out=tmp / "out", progress=False))


def test_cases_skips_parts_and_no_leakage(tmp_path, capsys):
    data = folder(tmp_path, TAGS)
    report = prepared_for(tmp_path, data, validation_share=0.4, max_cases_per_user=20)
    err = capsys.readouterr().err
    stats = report.dataset.stats
    # Every skip is counted under a reason naming the file and the field, and said on stderr.
    assert stats["skipped"] == {
        "ratings.csv: no rating by the userId before the case": 1,
        "tags.csv: movieId not in movies.csv": 1,
        "tags.csv: userId not in ratings.csv": 1,
    }
    assert "tags.csv: movieId not in movies.csv" in err
    assert stats["tag_groups"] == 2 + 3 + 25 and stats["capped_away"] == 25 - 20
    validation = prepared_for(tmp_path / "v", data, validation_share=0.4, part="validation")
    # The parts split the users, never a user's cases; together they are every kept case.
    users = {c.person for c in report.dataset.cases}
    val_users = {c.person for c in validation.dataset.cases}
    assert users and val_users and not users & val_users
    assert len(report.dataset.cases) + len(validation.dataset.cases) == stats["cases_total"] == 22
    cases = {c.user_id: c for c in report.dataset.cases + validation.dataset.cases}
    space = cases["10:3"]
    assert space.query == "space, robots" and space.history == ("1", "2") and space.target == "3"
    assert cases["10:4"].history == ("1", "2", "3") and cases["10:4"].query == "quiet drama"
    # Each history holds only what its user rated before the case.
    for c in cases.values():
        assert c.target not in c.history
    # No leakage: the retrievers learn from users who never tagged, all of them, nothing else.
    for prepared in (report, validation):
        trained = training_sequences(prepared)
        assert set(trained) == {"1", "2", "3", "4", "5", "6"}
        assert not set(trained) & ({c.person for c in cases.values()} | {"11", "77"})


@needs_ml_small
def test_the_suite_on_the_real_tags():
    suite = load_suite(ROOT / "eval" / "movielens-stated-need.yaml")
    prepared = prepare(suite, Settings(), RunOptions(out=Path("unused"), progress=False))
    stats = prepared.dataset.stats
    assert stats["tag_groups"] == 1775 and stats["tagging_users"] == 58
    assert stats["items"] == 9742  # full ranking over the whole catalog
    taggers = {line.split(",")[0] for line in (ML_SMALL / "tags.csv").read_text().splitlines()}
    trained = training_sequences(prepared)
    assert len(trained) == 610 - 58 and not set(trained) & taggers
    per_user: dict[str, int] = {}
    for c in prepared.cases:
        per_user[c.person] = per_user.get(c.person, 0) + 1
        assert c.query and c.history
    assert max(per_user.values()) <= 20
    ids = [c.id for c in suite.cells()]
    cells = ("default/rank/rank_default", "pmi/likelihood/likelihood_need")
    cells += ("fused-0.7/likelihood/likelihood_need",)
    every_input = [f"{c}@{i}" for c in cells for i in ("history", "query", "both")]
    # query likelihood scores the query: its block runs on query + history only
    ql = [
        f"{profile}/likelihood/{template}@both"
        for template, fused in (("likelihood_query", "0.3"), ("likelihood_query_genres", "0.7"))
        for profile in ("ql", f"fused-{fused}")
    ]
    assert sorted(ids) == sorted(every_input + ql)


def test_a_block_runs_some_of_the_protocols_inputs(tmp_path):
    path = suite_file(tmp_path, tmp_path)
    text = path.read_text() + "  - templates: [likelihood_query]\n    modes: [likelihood]\n"
    path.write_text(text + "    inputs: [both]\n")
    ids = [c.id for c in load_suite(path).cells()]
    assert "default/likelihood/likelihood_query@both" in ids
    assert not [i for i in ids if "likelihood_query@" in i and not i.endswith("@both")]
    assert len([i for i in ids if "rank_default" in i]) == 3  # the others run every input
    path.write_text(
        text.replace("[history, query, both]", "[history, both]") + "    inputs: [query]\n"
    )
    with pytest.raises(
        ConfigError, match=r"suite.yaml:8: matrix: block 1's inputs \['query'\] are not"
    ):
        load_suite(path)


def test_bad_suites_and_tags_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\ndataset: {format: movielens, path: .}\nprotocol: {inputs: [history, query]}\n"
        "matrix:\n  - modes: [rank]\n"
    )
    with pytest.raises(ConfigError, match=r"bad.yaml:3: protocol: .*only the stated-need"):
        load_suite(bad)
    bad.write_text(
        "name: x\ndataset: {format: ml-100k}\nprotocol: {split: stated-need}\n"
        "matrix:\n  - modes: [rank]\n"
    )
    with pytest.raises(ConfigError, match="dataset.format must be movielens"):
        load_suite(bad)
    tags = tmp_path / "tags.csv"
    tags.write_text("userId,movieId,tag\n1,2,x\n")
    with pytest.raises(CatalogError, match=r"tags.csv: missing columns \['timestamp'\]"):
        read_tags(tags)
    tags.write_text("userId,movieId,tag,timestamp\n1,2,x,10\n1,3,y,soon\n")
    with pytest.raises(CatalogError, match=r"tags.csv:3: bad row"):
        read_tags(tags)


async def test_a_small_real_run_over_three_inputs(recommender, embedder, tmp_path):
    data = folder(tmp_path, TAGS)
    suite = load_suite(suite_file(tmp_path, data, max_cases_per_user=2))
    suite.retrieval.train = ["itemknn"]
    prepared = prepare(
        suite,
        recommender.settings,
        RunOptions(out=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False),
    )
    doc = await run(
        prepared,
        recommender.settings,
        engine=recommender.engine,
        embedder=embedder,
        tokenizer=recommender.tokenizer,
    )
    n = len(prepared.cases)
    cells = {c["id"]: c for c in doc["cells"]}
    assert set(cells) == {f"default/rank/rank_default@{i}" for i in ("history", "query", "both")}
    for c in cells.values():
        assert c["users_completed"] == n and c["requests_failed"] == 0
        assert c["metrics"]["in_history_rate"] == 0.0  # seen items excluded whatever the input
    # The query is carried as the user's words: the prompt grows with it.
    tokens = {
        i: cells[f"default/rank/rank_default@{i}"]["metrics"]["prompt_tokens"]
        for i in ("history", "both")
    }
    assert tokens["both"] > tokens["history"]
    base = {b["id"] for b in doc["baselines"]}
    assert {"baseline/retrieval@query", "baseline/retrieval@both", "baseline/popularity"} <= base
    pairs = {(p["a"], p["b"]) for p in doc["inputs_paired"]}
    assert ("baseline/retrieval@both", "baseline/retrieval@history") in pairs
    assert ("default/rank/rank_default@both", "default/rank/rank_default@query") in pairs
    assert all(p["users"] == n for p in doc["inputs_paired"])
    # A user's cases are resampled together: the bootstrap draws users, not cases.
    people = {c.person for c in prepared.cases}
    assert len(people) < n
    assert all(p["resampled"] == len(people) for p in doc["inputs_paired"])
    assert all(c["vs_retrieval"]["resampled"] == len(people) for c in cells.values())
    cold = doc["cold_items"]
    assert cold["of"] == n and set(cold["rows"]) >= set(cells)
    # The same comparisons on the cold cases alone: as many pairs, each over those cases only.
    cold_pairs = {(p["a"], p["b"]): p for p in cold["inputs_paired"]}
    assert set(cold_pairs) == pairs
    assert all(p["users"] == cold["users"] for p in cold_pairs.values())
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Cost beside gain" in md and "## Inputs compared" in md and "stated-need" in md
    assert ("Inputs compared on the cold cases alone" in md) == (cold["users"] > 0)
