"""Suite files: the shipped ones parse; mistakes are reported with their YAML line."""

from __future__ import annotations

from pathlib import Path

import pytest

from genrec.errors import ConfigError
from genrec.evaluation.runner import sample_cases
from genrec.evaluation.splits import EvalCase
from genrec.evaluation.suite import load_suite, matches

EVAL = Path(__file__).resolve().parents[1] / "eval"

GOOD = """\
name: t
dataset:
  format: movielens
  path: /data/ml
matrix:
  - templates: [default, other]
    modes: [rank, generate]
  - modes: [describe]
    users: 5
thresholds:
  - {metric: recall@10, min: 0.01}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "suite.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["smoke.yaml", "movielens.yaml"])
def test_shipped_suites_parse(name):
    suite = load_suite(EVAL / name)
    assert suite.cells() and max(suite.ks) <= suite.candidates
    assert suite.dataset.format == "movielens" and suite.dataset.min_interactions == 5


def test_matrix_expands_grouped_by_mode(tmp_path):
    suite = load_suite(write(tmp_path, GOOD))
    ids = [c.id for c in suite.cells()]
    assert ids == [  # grouped by mode, fastest first; file order within
        "default/rank/default",
        "default/rank/other",
        "default/describe/default",
        "default/generate/default",
        "default/generate/other",
    ]
    assert suite.cells()[2].users == 5
    assert suite.ks == [1, 5, 10, 20] and suite.candidates == 20


def test_unknown_key_names_its_line(tmp_path):
    text = GOOD.replace("    modes: [rank, generate]", "    modes: [rank, generate]\n    mods: x")
    with pytest.raises(ConfigError) as err:
        load_suite(write(tmp_path, text))
    assert "suite.yaml:8:" in err.value.message and "matrix.0.mods" in err.value.message


def test_bad_mode_names_its_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_suite(write(tmp_path, GOOD.replace("[rank, generate]", "[rank, rerank]")))
    assert "suite.yaml:7:" in err.value.message and "matrix.0.modes.1" in err.value.message


def test_bad_threshold_metric_and_missing_bound(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_suite(write(tmp_path, GOOD.replace("recall@10, min: 0.01", "recal@10, min: 0.01")))
    assert "suite.yaml:11:" in err.value.message and "unknown metric" in err.value.message
    with pytest.raises(ConfigError) as err:
        load_suite(write(tmp_path, GOOD.replace(", min: 0.01", "")))
    assert "needs min or max" in err.value.message


def test_k_beyond_candidates_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="exceeds candidates"):
        load_suite(write(tmp_path, GOOD + "candidates: 10\n"))


def test_invalid_yaml_names_its_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_suite(write(tmp_path, GOOD.replace("  path: /data/ml", "  path: [/data/ml")))
    assert "suite.yaml:" in err.value.message and "invalid YAML" in err.value.message


def test_missing_suite_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_suite(tmp_path / "nope.yaml")


def test_unknown_profile_setting(tmp_path):
    text = GOOD.replace(
        "    modes: [rank, generate]\n",
        "    modes: [rank, generate]\n    profiles:\n      - {name: big, settings: {modle: x}}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_suite(write(tmp_path, text))
    assert (
        "suite.yaml:9:" in err.value.message and "unknown settings ['modle']" in err.value.message
    )


def test_cell_globs():
    assert matches("*/rank/*", "default/rank/default")
    assert not matches("*/rank/*", "default/generate/default")
    assert matches("baseline/*", "baseline/random")


def test_sample_is_seeded_and_prefix_stable():
    cases = [EvalCase(str(u), ("a",), "b") for u in range(50)]
    a = sample_cases(cases, 10, seed=0)
    assert a == sample_cases(list(reversed(cases)), 10, seed=0)  # input order does not matter
    assert sample_cases(cases, 20, seed=0)[:10] == a  # a smaller sample is a prefix
    assert a != sample_cases(cases, 10, seed=1)
    assert len(sample_cases(cases, None, seed=0)) == 50


def test_relative_paths_resolve_against_cwd_then_suite_folder_then_repo_root(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "eval").mkdir(parents=True)
    suite_path = repo / "eval" / "s.yaml"
    suite_path.write_text(GOOD.replace("/data/ml", "../shared/data/ml"))
    data = tmp_path / "shared" / "data" / "ml"  # beside the repository, as in the shipped suites
    data.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere" / "deep"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    suite = load_suite(suite_path)
    # Not under the working directory, nor beside the suite file: under the repository root.
    assert suite.resolve_path(suite.dataset.path) == data
    assert suite.path_candidates("../shared/data/ml") == [
        tmp_path / "elsewhere" / "shared" / "data" / "ml",
        repo / "shared" / "data" / "ml",
        data,
    ]
    (repo / "eval" / "here").mkdir()
    assert suite.resolve_path("here") == repo / "eval" / "here"  # beside the suite file
    (elsewhere / "here").mkdir()
    assert suite.resolve_path("here") == elsewhere / "here"  # the working directory first
    assert suite.resolve_path("/abs/missing") == Path("/abs/missing")
