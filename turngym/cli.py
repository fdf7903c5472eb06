"""The `turngym` command. Each subcommand imports what it needs when it runs, so `--help` is fast."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="turngym",
    help="Train and evaluate LLM agents on multi-turn text environments.",
    no_args_is_help=True,
    add_completion=False,
)
models_app = typer.Typer(
    help="Embedded models: list them and prepare them for transformers/vLLM.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

console = Console()


@models_app.command("list")
def models_list() -> None:
    """List model aliases, whether each is prepared, and where."""
    from turngym.agent.models import DEFAULT_MODEL, MODEL_ALIASES, is_prepared, prepared_path

    table = Table("alias", "prepared", "path", "description")
    table.columns[2].overflow = "fold"
    for alias, spec in MODEL_ALIASES.items():
        name = f"{alias} (default)" if alias == DEFAULT_MODEL else alias
        table.add_row(
            name, "yes" if is_prepared(alias) else "no", str(prepared_path(alias)), spec.description
        )
    console.print(table)


@models_app.command("prepare")
def models_prepare(
    name: str = typer.Argument("smollm2-135m", help="Model alias to convert (see `turngym models list`)."),
    force: bool = typer.Option(False, "--force", help="Convert again even if already prepared."),
) -> None:
    """Convert an embedded model into a cached Hugging Face directory (once) and print its path."""
    from turngym.agent.models import MODEL_ALIASES, ModelNotFoundError, is_prepared, prepare_model

    if name not in MODEL_ALIASES:
        console.print(f"[red]unknown model alias {name!r}[/red]; known: {', '.join(MODEL_ALIASES)}")
        raise typer.Exit(2)
    if is_prepared(name) and not force:
        console.print(f"{name} is already prepared")
    try:
        path = prepare_model(name, force=force)
    except ModelNotFoundError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(1) from err
    typer.echo(str(path))  # plain, unwrapped: scripts read this line


def main() -> None:
    """Entry point for `python -m turngym`."""
    app()
