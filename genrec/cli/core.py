"""`genrec recommend`, `genrec demo`, `genrec model prepare`, `genrec prompts list|show|render`: the
generative core from the command line (`genrec bench recommend` is in genrec.cli.bench).

Commands that start the LM engine run it with file descriptor 1 pointed at stderr, so nothing a
library (or vLLM's EngineCore child, which inherits the descriptor) prints can reach stdout; the
result is written to the real stdout afterwards. ``--json`` output is therefore exactly one JSON
document.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from genrec.cli.common import (
    ConfigOption,
    handles_errors,
    load_settings,
    print_json,
    stdout_to_stderr,
)
from genrec.settings import Settings

HistoryOption = typer.Option(
    "--history", help="An item ID or exact title the user liked (repeat; oldest first)."
)
ModeOption = typer.Option(None, "--mode", help="rank | generate | describe (default: settings).")
DEMO_TITLES = ["Star Wars", "Empire Strikes Back, The", "Return of the Jedi"]


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("recommend")(recommend_command)
    app.command("demo")(demo_command)
    model = typer.Typer(no_args_is_help=True, help="The LM: prepare the default model.")
    model.command("prepare")(model_prepare_command)
    model.command("threads")(model_threads_command)
    model.command("quantize")(model_quantize_command)
    app.add_typer(model, name="model")
    prompts = typer.Typer(no_args_is_help=True, help="Prompt templates: list, show, render.")
    prompts.command("list")(prompts_list_command)
    prompts.command("show")(prompts_show_command)
    prompts.command("render")(prompts_render_command)
    app.add_typer(prompts, name="prompts")


# ---------------------------------------------------------------------------------- helpers


def _settings(config: Path | None, **overrides: Any) -> Settings:
    from genrec.engines.inprocess import configure_vllm_env

    settings = load_settings(config, **overrides)
    configure_vllm_env(settings)  # before anything imports vLLM
    return settings


def open_catalog(settings: Settings) -> Any:
    """The configured collection, by genrec.ingest.open_catalog's one rule: the default
    collection is filled from the default dataset on first use (so `genrec recommend` works on
    a fresh machine); any other collection must be ingested first."""
    from genrec.ingest import open_catalog as open_index
    from genrec.training.default import ensure_default_retrievers

    def notice(line: str) -> None:
        typer.echo(line, err=True)

    index = open_index(settings, notice=notice)
    ensure_default_retrievers(settings, index, notice=notice)
    return index


def _request(**fields: Any) -> Any:
    from genrec.schema import RecommendRequest

    return RecommendRequest(**{k: v for k, v in fields.items() if v not in (None, [])})


def _print_result(result: Any) -> None:
    typer.echo(
        f"{result.mode} mode, template {result.template}, model {result.model}: "
        f"{len(result.items)} items in {result.timings.total_ms:.0f} ms "
        f"(retrieve {result.timings.retrieve_ms:.0f}, render {result.timings.render_ms:.0f}, "
        f"llm {result.timings.llm_ms:.0f}, ground {result.timings.ground_ms:.0f})"
    )
    for it in result.items:
        typer.echo(
            f"{it.rank:>3}. {it.title}  [id {it.id}]  score {it.score:.3f}  "
            f"({it.grounded_by}, confidence {it.confidence:.2f})"
        )
        # why (genrec.explain): the LM's sentence with --explain, else the evidence in words
        if why := " ".join((it.explanation or it.reason or "").split()):
            typer.echo(f"       — {why}")
    if result.mode == "describe" and result.outputs:
        typer.echo(f"     LM description: {result.outputs[0]}")
    if result.unmatched:
        typer.echo(f"     unmatched LM output: {result.unmatched}")


# ---------------------------------------------------------------------------------- recommend


@handles_errors
def recommend_command(
    query: str | None = typer.Option(None, "--query", "-q", help="What the user asks for."),
    history: Annotated[list[str] | None, HistoryOption] = None,
    k: int | None = typer.Option(None, "--k", help="How many items (default: settings.k)."),
    candidates: int | None = typer.Option(None, "--candidates", help="Candidates retrieved (N)."),
    mode: str | None = ModeOption,
    template: str | None = typer.Option(None, "--template", help="Prompt template name."),
    system: str | None = typer.Option(None, "--system", help="Extra system note for the LM."),
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Item ID to skip.")] = None,
    user: str | None = typer.Option(
        None, "--user", help="A user ID: the user's recorded events join the history."
    ),
    explain: bool = typer.Option(
        False, "--explain", help="The LM writes one sentence per item from its evidence."
    ),
    demo: bool = typer.Option(False, "--demo", help="Run `genrec demo` instead."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    config: Path | None = ConfigOption,
) -> None:
    """Recommend items for a history and/or a query with the LM."""
    if demo:
        demo_command(as_json=as_json, config=config)
        return
    from genrec.recommender import Recommender

    settings = _settings(config)
    request = _request(
        query=query,
        history=history or [],
        k=k,
        candidates=candidates,
        mode=mode,
        template=template,
        system=system,
        exclude=exclude or [],
        user_id=user,
        explain=explain or None,
    )

    Recommender(settings).plan(request)  # bad options fail now, before any slow start-up

    async def run() -> Any:
        index = await asyncio.to_thread(open_catalog, settings)
        async with Recommender(settings, index=index) as rec:
            return await rec.recommend(request)

    with stdout_to_stderr():
        result = asyncio.run(run())
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        _print_result(result)


@handles_errors
def demo_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    config: Path | None = ConfigOption,
) -> None:
    """Prepare the model and the default catalog, then recommend for a sample history in every
    mode (rank, likelihood, generate, describe)."""
    from genrec.model_files import model_path
    from genrec.recommender import Recommender

    settings = _settings(config)

    async def run() -> tuple[list[str], list[Any]]:
        await asyncio.to_thread(model_path, settings)
        index = await asyncio.to_thread(open_catalog, settings)
        history = []
        for title in DEMO_TITLES:
            item = await asyncio.to_thread(index.resolve, title)
            if item is not None:
                history.append(item.id)
        if not history:  # another catalog: a few items about space adventures
            hits = await asyncio.to_thread(index.search, "space adventure", k=3)
            history = [h.item.id for h in hits]
        async with Recommender(settings, index=index) as rec:
            results = []
            for mode in ("rank", "likelihood", "generate", "describe"):
                results.append(await rec.recommend(_request(history=history, k=5, mode=mode)))
            titles = [i.title for i in await asyncio.to_thread(index.get, history)]
            return titles, results

    with stdout_to_stderr():
        titles, results = asyncio.run(run())
    if as_json:
        print_json({"history": titles, "results": [r.model_dump(mode="json") for r in results]})
        return
    typer.echo(f"History: {'; '.join(titles)}\n")
    for r in results:
        _print_result(r)
        typer.echo("")


# ---------------------------------------------------------------------------------- model


@handles_errors
def model_prepare_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    config: Path | None = ConfigOption,
) -> None:
    """Convert the packaged default model once (cached under settings.models_dir), or check the
    GENREC_MODEL folder. Progress goes to stderr."""
    from genrec.model_files import model_info

    settings = _settings(config)
    started = time.perf_counter()
    with stdout_to_stderr():
        info = model_info(settings)
    info["seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        print_json(info)
    else:
        size = info.get("size_bytes")
        typer.echo(
            f"model {info['name']} ready at {info['model']}"
            + (f" ({size / 1e6:.0f} MB)" if size else "")
        )


@handles_errors
def model_threads_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    config: Path | None = ConfigOption,
) -> None:
    """The thread binding the in-process engine would use here (GENREC_CPU_THREADS_BIND).
    Without --json, prints the shell lines that give a `vllm serve` on this machine the same
    binding."""
    from genrec.engines.hardware import choose_binding

    settings = _settings(config)
    binding = choose_binding(settings.cpu_threads_bind)
    if as_json:
        print_json({**binding.describe(), "env": binding.env})
        return
    typer.echo(f"# {binding.describe()}")
    for name, value in binding.env.items():
        typer.echo(f"unset {name}" if value is None else f"export {name}={value}")


@handles_errors
def model_quantize_command(
    out: Annotated[Path, typer.Option("--out", help="The new folder for the int8 checkpoint.")],
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    config: Path | None = ConfigOption,
) -> None:
    """Write an int8 W8A8 checkpoint (per-channel int8 weights, per-token dynamic int8
    activations; compressed-tensors format vLLM's CPU build runs) of the model, for
    GENREC_MODEL=OUT. Quality and speed against bf16: notes in the README."""
    from genrec.model_files import model_path
    from genrec.quantize import write_w8a8

    settings = _settings(config)
    started = time.perf_counter()
    with stdout_to_stderr():
        dst = write_w8a8(model_path(settings), out)
    doc = {"model": str(dst), "seconds": round(time.perf_counter() - started, 2)}
    if as_json:
        print_json(doc)
    else:
        typer.echo(f"int8 W8A8 checkpoint written to {dst}; use it with GENREC_MODEL={dst}")


# ---------------------------------------------------------------------------------- prompts


@handles_errors
def prompts_list_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    config: Path | None = ConfigOption,
) -> None:
    """The prompt templates: name, modes, label style, version, description."""
    from genrec.prompts import PromptRegistry

    registry = PromptRegistry(load_settings(config))
    rows = [t.summary() for t in registry.list()]
    if as_json:
        print_json({"templates": rows, "errors": registry.errors})
        return
    for t in registry.list():
        default = f" (default for {', '.join(t.meta.default_for)})" if t.meta.default_for else ""
        typer.echo(
            f"{t.name:<22} modes={','.join(t.meta.modes):<10} labels={t.meta.labels:<8} "
            f"v{t.meta.version}{default}\n    {t.meta.description}"
        )
    for err in registry.errors:
        typer.echo(f"error: {err}", err=True)


@handles_errors
def prompts_show_command(
    name: str = typer.Argument(..., help="Template name."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    config: Path | None = ConfigOption,
) -> None:
    """A template's metadata and source."""
    from genrec.prompts import PromptRegistry

    tpl = PromptRegistry(load_settings(config)).get(name)
    if as_json:
        print_json({**tpl.summary(), "source": tpl.source})
    else:
        typer.echo(f"# {tpl.path} ({tpl.origin})")
        typer.echo(tpl.source.rstrip("\n"))


@handles_errors
def prompts_render_command(
    name: str = typer.Argument(..., help="Template name."),
    query: str | None = typer.Option(None, "--query", "-q", help="What the user asks for."),
    history: Annotated[list[str] | None, HistoryOption] = None,
    k: int | None = typer.Option(None, "--k", help="How many items."),
    candidates: int | None = typer.Option(None, "--candidates", help="Candidates retrieved (N)."),
    mode: str | None = typer.Option(None, "--mode", help="Default: the template's first mode."),
    system: str | None = typer.Option(None, "--system", help="Extra system note for the LM."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    config: Path | None = ConfigOption,
) -> None:
    """Exactly what the LM receives for a request: the final prompt string (chat template
    applied), with real candidates retrieved from the catalog. No engine is started."""
    from genrec.model_files import model_path
    from genrec.modes.likelihood import aligned_prompt, query_prompts, scored_texts
    from genrec.prompts import ChatTokenizer, PromptRegistry
    from genrec.recommender import Recommender

    settings = _settings(config)
    registry = PromptRegistry(settings)
    tpl = registry.get(name)
    request = _request(
        query=query,
        history=history or [],
        k=k,
        candidates=candidates,
        mode=mode or tpl.meta.modes[0],
        template=name,
        system=system,
    )
    with stdout_to_stderr():
        index = open_catalog(settings)
        tokenizer = ChatTokenizer.load(model_path(settings))
        rec = Recommender(settings, index=index, prompts=registry, tokenizer=tokenizer)
        plan = rec.plan(request)
        hist, cands = rec.retrieve(plan)
        rendered = rec.render(plan, hist, cands)
    # likelihood templates: the text scored after the prompt, per candidate; query likelihood:
    # the query, after each candidate's own prompt
    own: list[str | None] = [None] * len(cands)
    if tpl.meta.scores == "query":
        own, query_text = query_prompts(rendered, tpl, tokenizer, request.query or "")
        scored = [query_text] * len(cands)
    else:
        scored = scored_texts(rendered) if rendered.items else [None] * len(cands)
    prompt, pad = rendered.prompt, 0
    if rendered.mode == "likelihood" and tpl.meta.scores != "query":  # padded as scored
        align = settings.likelihood_align
        prompt, pad = aligned_prompt(prompt, rendered.prompt_tokens, tokenizer, align)
    if as_json:
        print_json(
            {
                "template": rendered.template,
                "mode": rendered.mode,
                "messages": rendered.messages,
                "prompt": prompt,
                "prompt_tokens": rendered.prompt_tokens + pad,
                "padding_tokens": pad,
                "candidates": [
                    {"label": lab, "id": c.id, "title": t}
                    | ({"prompt": p} if p is not None else {})
                    | ({"scored_text": s} if s is not None else {})
                    for lab, c, t, p, s in zip(
                        rendered.labels, cands, rendered.titles, own, scored, strict=True
                    )
                ],
            }
        )
    else:
        sys.stdout.write(prompt)
        if not prompt.endswith("\n"):
            sys.stdout.write("\n")
        if rendered.items:
            typer.echo("# scored after the prompt, one engine request per candidate:", err=True)
            for own_prompt, text in zip(own, scored, strict=True):
                head = f"{own_prompt!r} + " if own_prompt is not None else ""
                sys.stdout.write(f"{head}{text!r}\n")
        padding = f", {pad} of them cache-alignment padding" if pad else ""
        typer.echo(
            f"[{rendered.prompt_tokens + pad} tokens{padding}, template {rendered.template}]",
            err=True,
        )
