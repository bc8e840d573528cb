"""genrec finetune on real data: ML-100K's log (from the recbole package), an itemknn retriever
trained on it, rank_brief (and likelihood_need) prompts rendered by the serving path, a few steps
of fine-tuning the real default model. It shows the loss falls, that vLLM loads the written
folder and ranks with it (the fusion weight from its manifest, for the mode it was chosen for,
both score parts on every item), that the trainer scores a text exactly as vLLM's likelihood mode
does, that a killed run resumes, and that bad input is a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genrec.data.interactions import read_log
from genrec.errors import ConfigError, InvalidRequest
from genrec.index import CatalogIndex
from genrec.model_files import model_path
from genrec.modes.likelihood import score_texts
from genrec.prompts import PromptRegistry
from genrec.recommender import Recommender, resolve_fusion_weight
from genrec.retrieval import RetrievalQuery
from genrec.retrieval.registry import load_retrievers
from genrec.schema import MAX_HISTORY, RecommendRequest
from genrec.settings import Settings
from genrec.tokenizer import ChatTokenizer
from genrec.training.data import build, sequences_from_log
from genrec.training.finetune import MANIFEST, FinetuneConfig, finetune, read_manifest
from genrec.training.finetune_data import ExampleBuilder, ExamplePlan, LikelihoodExample
from genrec.training.objectives import LikelihoodObjective
from genrec.training.train import train_retrievers
from tests.test_retrieval import clone_collection

PLAN = ExamplePlan(
    candidates=8, prefixes_per_user=1, history_len=5, max_examples=24, validation_users=8
)
# Enough signal in a few steps: the top 2 layers, a high learning rate, three passes.
CONFIG = FinetuneConfig(
    method="top",
    top_layers=2,
    lr=1e-3,
    epochs=3,
    grad_accum=4,
    warmup_steps=1,
    eval_every=6,
    checkpoint_every=3,
    patience=10,
)


@pytest.fixture(scope="module")
def index(ml100k_index: CatalogIndex) -> CatalogIndex:
    return clone_collection(ml100k_index, "ml-100k-finetune")


@pytest.fixture(scope="module")
def sequences(index: CatalogIndex) -> dict[str, list[str]]:
    data = build(sequences_from_log(read_log(None, "ml-100k").interactions), index.ids())
    users = sorted(data.users)[:60]
    pos = {u: i for i, u in enumerate(data.users)}
    return {u: [data.item_ids[i] for i in data.sequences[pos[u]]] for u in users}


@pytest.fixture(scope="module")
def retrievers(settings: Settings, index: CatalogIndex):
    data = build(sequences_from_log(read_log(None, "ml-100k").interactions), index.ids())
    train_retrievers(settings, data, index, models=["itemknn"], progress=None)
    return load_retrievers(settings.model_copy(update={"retriever": "itemknn"}), index)


@pytest.fixture(scope="module")
def base(settings: Settings) -> str:
    return model_path(settings)


def build_examples(settings, index, retrievers, sequences, base, template, objective="rank"):
    builder = ExampleBuilder(
        PromptRegistry(settings).get(template),
        ChatTokenizer.load(base),
        retrievers.get("itemknn"),
        {it.id: it for it in index.get(sorted({i for s in sequences.values() for i in s}))},
        PLAN,
        collection=index.name,
        objective=objective,
    )
    return builder.build(sequences, seed=0)


@pytest.fixture(scope="module")
def examples(settings, index, retrievers, sequences, base):
    return build_examples(settings, index, retrievers, sequences, base, "rank_brief")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, examples, base):
    train, val = examples
    out = tmp_path_factory.mktemp("ranker") / "model"
    info = {"data": {"fingerprint": "test"}, "template": {"name": "rank_brief", "version": "1"}}
    return finetune(base, train, val, out, CONFIG, info=info, progress=False)


def test_examples_come_from_the_training_part_with_the_target_anywhere(examples, sequences):
    train, val = examples
    assert len(train) == 24 and len(val) == 8
    positions = {ex.target for ex in train}
    assert len(positions) > 3  # spread over the labels, not always the first
    for ex in train:
        assert 0 <= ex.target < 8 and len(ex.label_ids) == 8
        assert ex.prompt.count("\n") > 8 and "Best option letter:" in ex.prompt
    # Validation targets are each user's last item, in the retriever's own order.
    for ex in val:
        last = sequences[ex.user][-1]
        assert ex.target == (ex.candidates.index(last) if last in ex.candidates else -1)
    # No training example targets a user's last (validation) item.
    lasts = {u: s[-1] for u, s in sequences.items()}
    assert all(ex.candidates[ex.target] != lasts[ex.user] for ex in train)


def test_validation_reads_a_retriever_that_never_saw_its_target(
    settings, ml100k_index, sequences, retrievers, examples, base
):
    # The held-out retriever learned every user's items except the last (validation's target);
    # training examples still come from the full one. Its own collection: training moves the
    # collection's CURRENT bundle, which other tests here read.
    held_index = clone_collection(ml100k_index, "ml-100k-finetune-held")
    full = build(sequences_from_log(read_log(None, "ml-100k").interactions), held_index.ids())
    trimmed = {
        u: [full.item_ids[i] for i in s[:-1]]
        for u, s in zip(full.users, full.sequences, strict=True)
    }
    train_retrievers(
        settings, build(trimmed, held_index.ids()), held_index, models=["itemknn"], progress=None
    )
    held = load_retrievers(settings.model_copy(update={"retriever": "itemknn"}), held_index)
    builder = ExampleBuilder(
        PromptRegistry(settings).get("rank_brief"),
        ChatTokenizer.load(base),
        retrievers.get("itemknn"),
        {it.id: it for it in held_index.get(sorted({i for s in sequences.values() for i in s}))},
        PLAN,
        collection=held_index.name,
        held_out=held.get("itemknn"),
    )
    train, val = builder.build(sequences, seed=0)
    in_sample_train, in_sample_val = examples
    assert [ex.prompt for ex in train] == [ex.prompt for ex in in_sample_train]
    assert [ex.user for ex in val] == [ex.user for ex in in_sample_val]
    for ex in val:
        history = held_index.get(sequences[ex.user][:-1])
        older = frozenset(it.id for it in history[:-MAX_HISTORY])
        query = RetrievalQuery(
            text="", history=tuple(history[-MAX_HISTORY:]), k=PLAN.candidates + 1, exclude=older
        )
        found = held.get("itemknn").retrieve(query)
        by_id = {c.item.id: c.score for c in found[: PLAN.candidates]}
        assert set(ex.candidates) == set(by_id)
        assert ex.retrieval_scores == pytest.approx([by_id[i] for i in ex.candidates])
    # In sample, the full retriever had learned the target: its scores differ.
    assert any(
        a.retrieval_scores != b.retrieval_scores for a, b in zip(val, in_sample_val, strict=True)
    )


def test_the_loss_falls_and_the_manifest_says_what_was_trained(tuned):
    losses, steps_per_epoch = tuned.losses, len(tuned.losses) // 3
    first, last = losses[:steps_per_epoch], losses[-steps_per_epoch:]
    assert sum(last) / len(last) < sum(first) / len(first)
    m = read_manifest(tuned.out)
    assert m is not None and m["kind"] == "genrec-ranker"
    assert m["template"] == {"name": "rank_brief", "version": "1"}
    assert m["training"]["steps"] == len(losses) == 18
    assert 0.0 <= m["fusion"]["weight"] <= 1.0
    assert "0.00" in m["fusion"]["validation_ndcg@10_by_weight"]
    assert m["validation"]["zero_shot"]["ndcg@10"] >= 0.0
    assert (tuned.out / "config.json").is_file() and (tuned.out / MANIFEST).is_file()
    assert not any(p.name.startswith(".") for p in tuned.out.parent.iterdir())  # no leftovers


async def test_vllm_serves_the_fine_tuned_folder_with_both_score_parts(settings, index, tuned):
    s = settings.model_copy(update={"model": str(tuned.out), "retriever": "itemknn"})
    weight = read_manifest(tuned.out)["fusion"]["weight"]
    assert resolve_fusion_weight(s) == weight
    async with Recommender(s, index=index) as rec:
        got = await rec.recommend(
            RecommendRequest(history=["50", "172", "181"], k=5, candidates=8, template="rank_brief")
        )
        assert rec.ranker()["fine_tuned"] and rec.ranker()["fusion_weight"] == weight
        forced = s.model_copy(update={"fusion_weight": 1.0})
        rec.settings = forced  # the weight is the card's unless the setting says otherwise
        by_retriever = await rec.recommend(
            RecommendRequest(history=["50", "172", "181"], k=8, candidates=8, template="rank_brief")
        )
    assert got.fusion_weight == weight and len(got.items) == 5
    for item in got.items:
        assert item.lm_logprob is not None and item.lm_logprob <= 0.0
        assert item.retrieval_score is not None
    # With all the weight on the retriever, the order is the retriever's.
    assert [i.id for i in by_retriever.items] == by_retriever.candidates


def test_a_killed_run_resumes_and_never_leaves_a_half_written_model(tmp_path, examples, base):
    train, val = examples
    out = tmp_path / "model"

    class Killed(Exception):
        pass

    def kill_at_checkpoint(msg: str) -> None:
        if msg.startswith("checkpoint"):
            raise Killed

    cfg = FinetuneConfig(**{**CONFIG.__dict__, "epochs": 1.0})
    with pytest.raises(Killed):
        finetune(base, train, val, out, cfg, info={}, say=kill_at_checkpoint, progress=False)
    assert not out.exists()  # nothing half-written where the model goes
    said: list[str] = []
    result = finetune(base, train, val, out, cfg, info={}, say=said.append, progress=False)
    assert any(m.startswith("resuming from step 3") for m in said)
    assert result.manifest["training"]["steps"] == 6 and (out / MANIFEST).is_file()
    assert len(result.losses) == 6


def test_bad_input_is_a_clear_error(settings, index, retrievers, base, tmp_path):
    registry = PromptRegistry(settings)
    tok = ChatTokenizer.load(base)
    items = {it.id: it for it in index.get(["50", "172", "181", "1", "2"])}
    with pytest.raises(InvalidRequest) as err:
        ExampleBuilder(
            registry.get("generate_default"),
            tok,
            retrievers.get("itemknn"),
            items,
            PLAN,
            collection=index.name,
        )
    assert err.value.param == "template" and "does not serve rank" in err.value.message
    builder = ExampleBuilder(
        registry.get("rank_brief"),
        tok,
        retrievers.get("itemknn"),
        items,
        PLAN,
        collection=index.name,
    )
    with pytest.raises(InvalidRequest) as err:
        builder.build({"u1": ["50", "172", "181", "1", "2"]}, seed=0)
    assert err.value.param == "log" and "training examples" in err.value.message
    with pytest.raises(ConfigError) as err:
        finetune(str(tmp_path / "nowhere"), [], [], tmp_path / "m", CONFIG, info={})
    assert err.value.param == "model"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text("{not json")
    with pytest.raises(ConfigError) as err:
        resolve_fusion_weight(settings.model_copy(update={"model": str(broken)}))
    assert err.value.param == "model"


def test_the_cli_refuses_a_collection_without_a_trained_retriever(settings, ml100k_index):
    from genrec.cli import app

    env = {
        "GENREC_HOME": str(settings.home),
        "GENREC_MODEL_CACHE": str(settings.models_dir),
        "GENREC_TRAIN_DEFAULT": "false",
    }
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "genrec-finetune-test.csv"
    log.write_text("user_id,item_id,timestamp\n1,50,1\n1,172,2\n1,181,3\n")
    got = CliRunner().invoke(
        app, ["finetune", str(log), "--collection", ml100k_index.name, "--out", "x"], env=env
    )
    assert got.exit_code == 1, got.output
    assert "no trained retriever" in got.output and "genrec train" in got.output


# ----------------------------------------------------------------------- the likelihood objective

LIKELIHOOD_CONFIG = FinetuneConfig(**{**CONFIG.__dict__, "objective": "likelihood", "lr": 3e-4})


@pytest.fixture(scope="module")
def likelihood_examples(settings, index, retrievers, sequences, base):
    return build_examples(
        settings, index, retrievers, sequences, base, "likelihood_need", "likelihood"
    )


@pytest.fixture(scope="module")
def likelihood_tuned(tmp_path_factory, likelihood_examples, base):
    train, val = likelihood_examples
    out = tmp_path_factory.mktemp("likelihood") / "model"
    info = {"data": {"fingerprint": "test"}, "template": {"name": "likelihood_need"}}
    return finetune(base, train, val, out, LIKELIHOOD_CONFIG, info=info, progress=False)


def test_likelihood_examples_score_the_target_text_after_the_history(
    likelihood_examples, sequences, index
):
    train, val = likelihood_examples
    assert len(train) == 24 and len(val) == 8
    lasts = {u: s[-1] for u, s in sequences.items()}
    for ex in train:
        assert isinstance(ex, LikelihoodExample)
        assert ex.target == 0 and len(ex.texts) == 1 and ex.candidates[0] != lasts[ex.user]
        title = index.get([ex.candidates[0]])[0].title
        assert ex.texts[0].strip().startswith(title)
        assert "I liked these movies" in ex.prompt and "I liked" not in ex.null_prompt
    for ex in val:
        assert len(ex.texts) == len(ex.candidates) == 8
        last = lasts[ex.user]
        assert ex.target == (ex.candidates.index(last) if last in ex.candidates else -1)


async def test_the_trainer_scores_a_text_as_vllm_likelihood_mode_does(
    recommender, likelihood_examples, base
):
    """The validation that chooses the weights and the fusion weight reads what serving reads:
    the same tokens, the same positions (HF bf16 against vLLM bf16: close, not bit-equal)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train, val = likelihood_examples
    ex = val[0]
    served = await score_texts(recommender.engine, ex.prompt, ex.texts)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="bfloat16")
    trainer = LikelihoodObjective(AutoTokenizer.from_pretrained(base), train, val)
    import torch

    with torch.no_grad():
        mine = trainer._text_logprobs(model, ex.prompt, ex.texts, "cpu")
    for got, want in zip(mine, served, strict=True):
        assert len(got) == len(want.token_logprobs) > 0
        mean_got, mean_want = sum(got) / len(got), sum(want.token_logprobs) / len(got)
        assert abs(mean_got - mean_want) < 0.2, (mean_got, mean_want)
    order = sorted(range(len(mine)), key=lambda i: -sum(mine[i]) / len(mine[i]))
    served_order = sorted(
        range(len(served)), key=lambda i: -sum(served[i].token_logprobs) / len(mine[i])
    )
    assert order[0] in served_order[:2]


def test_the_likelihood_loss_falls_and_the_manifest_names_the_mode(likelihood_tuned):
    losses, per_epoch = likelihood_tuned.losses, len(likelihood_tuned.losses) // 3
    assert sum(losses[-per_epoch:]) / per_epoch < sum(losses[:per_epoch]) / per_epoch
    m = read_manifest(likelihood_tuned.out)
    assert m["objective"] == "likelihood" and m["fusion"]["mode"] == "likelihood"
    # the calibration was chosen on validation, among all three, and serving will use it
    assert m["likelihood_score"] == m["validation"]["best"]["score"] in ("pmi", "mean", "sum")
    assert set(m["validation"]["zero_shot"]["ndcg@10_by_score"]) == {"pmi", "mean", "sum"}
    assert 0.0 <= m["fusion"]["weight"] <= 1.0
    assert m["validation"]["zero_shot"]["recall@20"] > 0.0  # some validation targets retrieved


async def test_vllm_serves_the_likelihood_folder_with_its_weight_for_that_mode_only(
    settings, index, likelihood_tuned
):
    out = likelihood_tuned.out
    s = settings.model_copy(
        update={"model": str(out), "retriever": "itemknn", "mode": "likelihood"}
    )
    weight = read_manifest(out)["fusion"]["weight"]
    assert resolve_fusion_weight(s, "likelihood") == weight
    assert resolve_fusion_weight(s, "rank") == 0.0  # chosen for likelihood, not for rank
    async with Recommender(s, index=index) as rec:
        got = await rec.recommend(RecommendRequest(history=["50", "172", "181"], k=5, candidates=8))
        assert rec.ranker()["objective"] == "likelihood"
        assert rec.settings.likelihood_score == read_manifest(out)["likelihood_score"]
    assert got.mode == "likelihood" and got.fusion_weight == weight and len(got.items) == 5
    assert all(i.lm_logprob is not None and i.retrieval_score is not None for i in got.items)


def test_the_objective_and_the_template_must_agree(settings, index, retrievers, base):
    registry = PromptRegistry(settings)
    tok = ChatTokenizer.load(base)
    items = {it.id: it for it in index.get(["50", "172", "181"])}
    for template, objective, says in (
        ("rank_brief", "likelihood", "does not serve likelihood"),
        ("likelihood_need", "rank", "does not serve rank"),
        ("likelihood_need", "ranking", "objective must be"),
        ("likelihood_query", "likelihood", "scores the query"),
    ):
        with pytest.raises(InvalidRequest) as err:
            ExampleBuilder(
                registry.get(template),
                tok,
                retrievers.get("itemknn"),
                items,
                PLAN,
                collection=index.name,
                objective=objective,
            )
        assert says in err.value.message
