"""A request goes down only: the modules one request runs through import nothing that climbs
back up (the catalog index from a mode or from grounding, training from the flow), counting
imports inside functions and under TYPE_CHECKING (tests/test_architecture.py's walk)."""

from __future__ import annotations

from tests.test_architecture import _imports, _modules


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _under(names: set[str], *prefixes: str) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)}


def test_modes_and_grounding_are_given_what_they_need():
    graph = _graph()
    inside = _under(set(graph), "genrec.modes", "genrec.grounding")
    assert "genrec.modes.base" in inside and "genrec.grounding" in inside
    for name in inside:
        # the catalog comes as grounding's Catalog protocol, the prompt as the request's frame
        assert not _under(graph[name], "genrec.index", "genrec.recommender"), name
    assert "genrec.flow.prompt" in graph["genrec.modes.base"]  # re-rendered through the frame


def test_the_flow_reads_the_model_card_not_training():
    graph = _graph()
    flow = _under(set(graph), "genrec.recommender", "genrec.flow", "genrec.modes")
    assert "genrec.flow.plan" in flow
    for name in flow:
        assert not _under(graph[name], "genrec.training"), name
    assert "genrec.model_card" in graph["genrec.recommender"]
