"""`genrec finetune`: fine-tune the ranking LM on prompts built from interaction data, for rank
mode (the target's label) or likelihood mode (the target's text)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from genrec.cli.common import ConfigOption, handles_errors, load_settings, print_json

SourceArgument = typer.Argument(
    ...,
    help="An evaluation suite (.yaml: its dataset, split and retrievers; examples come from the "
    "split's training part only) or an interaction log for --collection (a MovieLens folder, "
    "ML-100K's .inter, a CSV/JSONL of user_id, item_id, timestamp).",
)

OutOption = typer.Option(..., help="The model folder to write (a Hugging Face folder).")
DataOption = typer.Option(None, help="A suite's dataset path (overrides the suite's).")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("finetune")(finetune_command)


def quiet_openmp() -> None:
    """OpenMP threads that sleep at a barrier instead of spinning. torch's default (spin) is
    ruinous when the cores are shared: measured on a 2-core machine under load, a 300-token
    forward took 20 s with two spinning threads, 0.7 s with one, 0.2-0.3 s with two passive
    ones. Read once, when torch loads OpenMP: so before torch is imported (a caller's explicit
    OMP_WAIT_POLICY wins)."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@handles_errors
def finetune_command(
    source: Path = SourceArgument,
    out: Path = OutOption,
    data: Path | None = DataOption,
    collection: str | None = typer.Option(None, help="With a log: the catalog collection."),
    objective: str = typer.Option(
        "rank",
        help="rank: the target's label among the candidates' (rank mode) | likelihood: the "
        "token cross-entropy of the target item's text given the history (likelihood mode).",
    ),
    template: str | None = typer.Option(
        None, help="The template that will serve (default: rank_brief | likelihood_need)."
    ),
    base: str | None = typer.Option(None, help="The model to start from (default: settings)."),
    method: str = typer.Option("top", help="top (the last --top-layers layers) | full | lora."),
    top_layers: int = typer.Option(8, min=1, help="With --method top: layers trained."),
    lr: float | None = typer.Option(None, help="Learning rate (default: 1e-4; lora 5e-4)."),
    epochs: float = typer.Option(1.0, min=0.01, help="Passes over the training examples."),
    grad_accum: int = typer.Option(8, min=1, help="Examples per optimizer step."),
    candidates: int = typer.Option(20, min=2, max=52, help="Candidates per prompt (N)."),
    prefixes: int = typer.Option(4, min=1, help="Training prefixes drawn per user."),
    max_examples: int | None = typer.Option(1600, help="Cap on training examples (seeded)."),
    validation_users: int | None = typer.Option(200, help="Validation users (seeded sample)."),
    history_len: int = typer.Option(20, min=1, help="History items a prompt shows."),
    eval_every: int = typer.Option(25, min=1, help="Validate every this many steps."),
    patience: int = typer.Option(4, min=1, help="Evaluations without a gain before stopping."),
    max_seconds: float | None = typer.Option(
        3300, min=1, help="Wall-time budget (training + validation); the best weights are kept."
    ),
    seed: int = typer.Option(0, help="The same data and seed give the same model."),
    threads: int | None = typer.Option(None, min=1, help="torch threads (default: all cores)."),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON on stdout."),
    config: Path | None = ConfigOption,
) -> None:
    """Fine-tune the ranker: examples from the training part only (several history prefixes
    per user; for rank, the retriever's top N with the true next item at a random position), the
    loss on the target's label among the candidates' labels (rank) or on the target item's text
    (likelihood), early stopping on validation NDCG@10 of the retriever's top N scored as the
    mode scores them, the fusion weight chosen on validation; writes a model folder vLLM serves
    (GENREC_MODEL=OUT)."""
    quiet_openmp()
    from genrec.errors import ConfigError
    from genrec.model_files import model_path
    from genrec.prompts import PromptRegistry
    from genrec.tokenizer import ChatTokenizer
    from genrec.training.finetune import FinetuneConfig, finetune
    from genrec.training.finetune_data import OBJECTIVES, ExampleBuilder, ExamplePlan

    settings = load_settings(config)
    if not source.exists():
        raise ConfigError(f"{source} does not exist", param="source")
    held_out = None  # validation's retriever when it differs from training's
    if source.suffix in (".yaml", ".yml"):
        index, retrievers, sequences, info, held_out = _from_suite(source, data, settings)
    else:
        index, retrievers, sequences, info = _from_log(source, collection, settings)
    retriever_name = retrievers.default
    if retriever_name == "content":
        raise ConfigError(
            f"collection {index.name!r} has no trained retriever, so there are no hard negatives "
            f"to fine-tune on: run `genrec train LOG --collection {index.name}` first",
            param="retriever",
        )
    base_model = base or model_path(settings)
    if objective not in OBJECTIVES:
        raise ConfigError(
            f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}",
            param="objective",
        )
    registry = PromptRegistry(settings)
    tmpl = registry.get(template or ("rank_brief" if objective == "rank" else "likelihood_need"))
    plan = ExamplePlan(
        candidates=candidates,
        prefixes_per_user=prefixes,
        history_len=history_len,
        max_examples=max_examples,
        validation_users=validation_users,
    )
    builder = ExampleBuilder(
        tmpl,
        ChatTokenizer.load(base_model),
        retrievers.get(retriever_name),
        {it.id: it for it in index.get(sorted({i for s in sequences.values() for i in s}))},
        plan,
        collection=index.name,
        objective=objective,
        align=settings.likelihood_align,
        held_out=held_out.get(retriever_name) if held_out is not None else None,
    )
    _say(f"building examples with {retriever_name}'s top {candidates} ({len(sequences)} users)")
    train, val = builder.build(sequences, seed, progress=lambda d, t: _say(f"examples: {d}/{t}"))
    _say(
        f"{len(train)} training examples, {len(val)} validation users; mean prompt "
        f"{sum(e.prompt_tokens for e in train) / len(train):.0f} tokens"
    )
    cfg = FinetuneConfig(
        objective=objective,
        likelihood_score=settings.likelihood_score,
        method=method,
        top_layers=top_layers,
        lr=lr if lr is not None else (5e-4 if method == "lora" else 1e-4),
        epochs=epochs,
        grad_accum=grad_accum,
        eval_every=eval_every,
        patience=patience,
        checkpoint_every=eval_every,
        max_seconds=max_seconds,
        seed=seed,
        threads=threads,
    )
    info.update(
        {
            "template": {"name": tmpl.name, "version": tmpl.meta.version},
            "retriever": {**info.get("retriever", {}), "name": retriever_name},
            "examples": {**plan.__dict__, "seed": seed},
        }
    )
    if objective == "likelihood":  # how its prompts were padded (serve with the same setting)
        info["likelihood_align"] = settings.likelihood_align
    result = finetune(base_model, train, val, out, cfg, info=info, say=_say)
    m = result.manifest
    if json_out:
        print_json(m)
        return
    t = m["training"]
    typer.echo(
        f"wrote {out}: {t['steps']} steps, {t['examples_seen']} examples in {t['seconds']} s "
        f"({t['examples_per_s']} examples/s); validation NDCG@10 "
        f"{m['validation']['zero_shot']['ndcg@10']:.4f} -> {m['validation']['best']['ndcg@10']:.4f}"
        f"; fusion weight {m['fusion']['weight']} (NDCG@10 {m['fusion']['validation_ndcg@10']:.4f})"
    )
    typer.echo(
        f"serve it: GENREC_MODEL={out} GENREC_MODE={objective} GENREC_TEMPLATE={tmpl.name} "
        "genrec serve"
    )


def _from_suite(suite_file: Path, data: Path | None, settings: Any) -> tuple:
    """The suite's collection, retrievers (trained on the split's training part, or a kept
    bundle trained on exactly it), each user's items before the split's target, the run's info,
    and for a test split the validation split's retrievers (trained on each user's items before
    the validation target): validation's candidates and the fusion weight's scores come from
    them, out of sample as at serving; None for other splits (validation is then in-sample)."""
    from genrec.evaluation.prepare import RunOptions, prepare
    from genrec.evaluation.retrievers import prepare_retrievers, training_sequences
    from genrec.evaluation.runner import open_index
    from genrec.evaluation.suite import load_suite
    from genrec.training.data import build

    suite = load_suite(suite_file)
    prepared = prepare(suite, settings, RunOptions(out=Path("."), data=data))
    index = open_index(prepared, settings)
    retrievers = prepare_retrievers(prepared, settings, index)
    sequences = training_sequences(prepared)
    held_out = None
    if suite.protocol.split == "test":
        proto = suite.protocol.model_copy(update={"split": "validation"})
        before_val = prepare(
            suite.model_copy(update={"protocol": proto}), settings, RunOptions(Path("."), data=data)
        )
        _say("validation's retrievers: trained on each user's items before the validation target")
        held_out = prepare_retrievers(before_val, settings, index)
    fp = build(sequences, index.ids(), source=prepared.dataset.source).fingerprint()
    info = {
        "data": {
            "fingerprint": fp,
            "source": prepared.dataset.source,
            "suite": str(suite_file),
            "split": suite.protocol.split,
            "users": len(sequences),
        },
        "retriever": {
            "collection": index.name,
            "bundle": _bundle(retrievers),
            "validation_bundle": _bundle(held_out or retrievers),
            "validation": "held out" if held_out is not None else "in-sample",
        },
    }
    return index, retrievers, sequences, info, held_out


def _from_log(log: Path, collection: str | None, settings: Any) -> tuple:
    """A collection's trained retrievers and a log read as `genrec train` reads it; the last
    item of each user is validation's."""
    from genrec.data.interactions import read_log
    from genrec.ingest import open_catalog
    from genrec.retrieval.registry import load_retrievers
    from genrec.training.data import build, sequences_from_log

    name = collection or settings.collection
    index = open_catalog(settings, name, notice=_say)
    read = read_log(log, None)
    data = build(sequences_from_log(read.interactions), index.ids(), source=read.source)
    sequences = {
        u: [data.item_ids[i] for i in s] for u, s in zip(data.users, data.sequences, strict=True)
    }
    retrievers = load_retrievers(settings, index)
    info = {
        "data": {
            "fingerprint": data.fingerprint(),
            "source": read.source,
            "users": len(sequences),
        },
        "retriever": {
            "collection": name,
            "bundle": _bundle(retrievers),
            "validation": "in-sample",  # the bundle learned every user's last item too
        },
    }
    return index, retrievers, sequences, info


def _bundle(retrievers: Any) -> str | None:
    return retrievers.bundle.version if retrievers.bundle is not None else None
