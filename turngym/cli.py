"""The `turngym` command. Each subcommand imports what it needs when it runs, so `--help` is fast.

Every subcommand takes `--verbose`/`-v` (also accepted before the subcommand), and those that make
envs (check, play, train, eval) take `--import MODULE` for env ids a module of yours registers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup

from turngym.envs.core import count_of

if TYPE_CHECKING:
    from turngym.agent.generator import SamplingParams
    from turngym.agent.records import TurnRecord
    from turngym.trainer.eval_run import EvalModel
    from turngym.trainer.suite import SuiteConfig


class _Argument(TyperArgument):
    """A positional argument shown by its metavar alone: `ENV`, `[ALIAS]`, `RUN_DIR...`."""

    def display_type_rich(self, ctx: Any) -> None:
        """No `<str>` beside the metavar."""
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        """`NAME` when required, else `[NAME]` (typer writes `{name}`)."""
        name = self.metavar or self.name.upper()
        return [name if self.required else f"[{name}]"]


class _HelpNotation:
    """Help in the usual notation: `check [OPTIONS] ENV`, `--fuzz N`, and flags with no value shown.

    typer 0.29 labels every parameter with its Python type instead (`{target} <str>`, `--force
    <bool>`). Its parameters are built inside typer, so they are adjusted here, once, when a command
    is built: arguments become `_Argument`s and flags get an empty metavar. Options that take a
    value name their metavar where they are declared (tests/test_cli_options.py checks every one).
    """

    params: list[Any]

    def _plain_params(self) -> None:
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _Argument  # same fields, two methods overridden (no other way in)
            elif getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""

    def get_help_option(self, ctx: Any) -> Any:
        """`--help`, a flag like the others."""
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class _Command(_HelpNotation, TyperCommand):
    """Every subcommand's class (`cls=_Command`): typer's, with `_HelpNotation`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_params()


class _Group(_HelpNotation, TyperGroup):
    """The class of `turngym` and its command groups (`models`, `envs`): typer's, with `_HelpNotation`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_params()


app = typer.Typer(
    name="turngym",
    help="Train and evaluate LLM agents on multi-turn text environments.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # subcommands inherit it
    cls=_Group,
)
models_app = typer.Typer(
    help="Embedded models: list them and prepare them for transformers/vLLM.", no_args_is_help=True, cls=_Group
)
app.add_typer(models_app, name="models")
envs_app = typer.Typer(help="Text environments: list the ids you can make.", no_args_is_help=True, cls=_Group)
app.add_typer(envs_app, name="envs")

console = Console()
err_console = Console(stderr=True)  # messages that must not mix with a command's output

VERBOSE_HELP = "Show vLLM's, torch's and transformers' own logs (same as TURNGYM_VERBOSE=1)."


def _print_version(value: bool) -> None:
    if value:
        from turngym import __version__

        typer.echo(f"turngym {__version__}")
        raise typer.Exit()


def _set_verbosity(verbose: bool) -> None:
    """Every subcommand's `--verbose`: TURNGYM_VERBOSE=1 if given; then the libraries are quieted unless verbose.

    typer calls it while it parses the subcommand's options, whether the flag is given or not: after
    a `turngym --verbose` before the subcommand has set the variable, and before the subcommand
    imports vLLM, torch or transformers.
    """
    import os

    from turngym.agent.logs import VERBOSE_ENV, quiet_libraries

    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    quiet_libraries()


VERBOSE = typer.Option(False, "--verbose", "-v", callback=_set_verbosity, help=VERBOSE_HELP)
"""Every subcommand's `--verbose`; `turngym -v CMD` and `turngym CMD -v` do the same."""
IMPORTS = typer.Option(
    [],
    "--import",
    metavar="MODULE",
    help="Import MODULE first, for the env ids it registers (gymnasium.register); repeatable. Found on "
    "PYTHONPATH, among installed packages or in the current directory (searched last).",
)
"""`--import` of the commands that make envs."""


@app.callback()
def _main_options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Train and evaluate LLM agents on multi-turn text environments."""
    import os

    from turngym.agent.logs import VERBOSE_ENV

    if verbose:  # the subcommand's own --verbose then quiets the libraries, or not (`_set_verbosity`)
        os.environ[VERBOSE_ENV] = "1"


@models_app.command("list", cls=_Command)
def models_list(verbose: bool = VERBOSE) -> None:
    """List model aliases, whether each is prepared, and where."""
    from turngym.agent.models import DEFAULT_MODEL, MODEL_ALIASES, is_prepared, prepared_path

    table = Table("alias", "prepared", "path", "description")
    table.columns[2].overflow = "fold"
    for alias, spec in MODEL_ALIASES.items():
        name = f"{alias} (default)" if alias == DEFAULT_MODEL else alias
        table.add_row(name, "yes" if is_prepared(alias) else "no", str(prepared_path(alias)), spec.description)
    console.print(table)


@models_app.command("prepare", cls=_Command)
def models_prepare(
    name: str = typer.Argument(
        "smollm2-135m", metavar="ALIAS", help="Model alias to convert (see `turngym models list`)."
    ),
    force: bool = typer.Option(False, "--force", help="Convert again even if already prepared."),
    verbose: bool = VERBOSE,
) -> None:
    """Convert an embedded model into a cached Hugging Face directory (once) and print its path."""
    from turngym.agent.models import MODEL_ALIASES, ModelNotFoundError, is_prepared, prepare_model

    if name not in MODEL_ALIASES:
        import difflib

        close = difflib.get_close_matches(name, MODEL_ALIASES, n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]}?" if close else ""
        err_console.print(f"[red]unknown model alias {name!r}.[/red]{hint} Known: {', '.join(MODEL_ALIASES)}")
        raise typer.Exit(2)
    if is_prepared(name) and not force:
        err_console.print(f"{name} is already prepared")
    try:
        path = prepare_model(name, force=force)
    except ModelNotFoundError as err:
        err_console.print(f"[red]{err}[/red]")
        raise typer.Exit(1) from err
    typer.echo(str(path))  # plain, unwrapped: scripts read this line


@envs_app.command("list", cls=_Command)
def envs_list(
    textarena: bool = typer.Option(False, "--textarena", help="Also list TextArena's single-player games."),
    reasoning_gym: bool = typer.Option(False, "--reasoning-gym", help="Also list reasoning-gym's datasets."),
    verbose: bool = VERBOSE,
) -> None:
    """List environment ids with one-line descriptions."""
    from turngym.envs import REASONING_GYM_PREFIX, TEXTARENA_PREFIX, registry
    from turngym.envs.terminal import full_width

    table = Table("id", "description")
    for info in registry().values():
        table.add_row(info.id, info.description)
    if textarena:
        from turngym.envs.textarena_env import single_player_games
        from turngym.envs.textarena_survey import recorded

        record = recorded()
        checked = record.get("games", {})
        for game_id, note in single_player_games().items():
            table.add_row(TEXTARENA_PREFIX + game_id, _textarena_status(note, checked.get(game_id)))
    if reasoning_gym:
        import reasoning_gym as rg

        for name in sorted(rg.factory.DATASETS):
            table.add_row(REASONING_GYM_PREFIX + name, "reasoning-gym task, scored by reasoning-gym")
    full_width(console).print(table)
    if textarena:
        console.print(
            f"TextArena games: status from `turngym check` ({record.get('fuzz', '?')} fuzzed actions) with textarena "
            f"{record.get('textarena', '?')}; `python -m turngym.envs.textarena_survey --write` checks them again."
        )
    if not (textarena and reasoning_gym):
        console.print(
            f"Also: {TEXTARENA_PREFIX}<GameId> (any single-player TextArena game; --textarena lists them) and "
            f"{REASONING_GYM_PREFIX}<dataset> (any reasoning-gym task; --reasoning-gym lists them)."
        )


def _textarena_status(note: str, checked: dict | None) -> str:
    """One game's line in `envs list --textarena`: the survey's result, else the static note."""
    status = (checked or {}).get("status")
    if status == "pass":
        return "single-player TextArena game; passes `turngym check`"
    if status == "slow":
        return f"resets can take minutes: {checked['detail']}"
    if status == "fail":
        return f"FAILS `turngym check`: {checked['detail']}"
    return note or (checked or {}).get("detail") or "single-player TextArena game (not checked)"


@app.command("check", cls=_Command)
def check(
    target: str = typer.Argument(
        ...,
        metavar="ENV",
        help="An env id (one an --import module registers too), or MODULE:CLASS / path/to/file.py:CLASS of your "
        "own env.",
    ),
    kwarg: list[str] = typer.Option(
        [], "--kwarg", "-k", metavar="KEY=VALUE", help="Constructor argument (repeatable)."
    ),
    fuzz: int = typer.Option(1000, min=0, metavar="N", help="Number of fuzzed actions."),
    seed: int = typer.Option(0, min=0, metavar="N", help="Seed for fuzzing and resets."),
    imports: list[str] = IMPORTS,
    verbose: bool = VERBOSE,
) -> None:
    """Check an environment with turngym's checker and Gymnasium's, and print a report."""
    from turngym.envs.checker import CheckOptions, run_checks
    from turngym.envs.terminal import full_width

    _import_modules(imports)
    env, gym_env = _load_env(target, _parse_kwargs(kwarg), for_gymnasium=True)
    # Gymnasium's checker gets the instance made through gymnasium.make where it can be (it has a spec)
    results = run_checks(env, CheckOptions(fuzz=fuzz, seed=seed, gymnasium_env=gym_env, progress=_dim_line))
    table = Table("check", "result", "detail", title=f"turngym check {target}")
    for r in results:
        status = "[yellow]skipped[/yellow]" if r.skipped else "[green]pass[/green]" if r.passed else "[red]FAIL[/red]"
        table.add_row(r.name, status, r.detail)
    full_width(console).print(table)
    failed = [r for r in results if not r.passed and not r.skipped]
    console.print(
        f"[red]{count_of(len(failed), 'check')} failed[/red]" if failed else "[green]all checks passed[/green]"
    )
    if failed:
        raise typer.Exit(1)


def _dim_line(line: str) -> None:
    """Progress on stderr, so it never mixes with a command's output."""
    err_console.print(f"[dim]{escape(line)}[/dim]", highlight=False)


@app.command("play", cls=_Command)
def play(
    env_id: str = typer.Argument(
        ...,
        metavar="ENV",
        help="An env id (see `turngym envs list`; one an --import module registers too), MODULE:CLASS or "
        "path/to/file.py:CLASS.",
    ),
    seed: int | None = typer.Option(None, min=0, metavar="N", help="Episode seed (same seed, same game)."),
    kwarg: list[str] = typer.Option(
        [], "--kwarg", "-k", metavar="KEY=VALUE", help="Constructor argument (repeatable)."
    ),
    model: str | None = typer.Option(
        None, metavar="MODEL", help="Let a model play: an alias, a model directory, or an endpoint's model name."
    ),
    backend: str = typer.Option("vllm", metavar="BACKEND", help="With --model: vllm, hf, or openai (with --base-url)."),
    base_url: str | None = typer.Option(
        None, metavar="URL", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."
    ),
    api_key_env: str = typer.Option(
        "OPENAI_API_KEY", metavar="VAR", help="Environment variable holding the endpoint's API key."
    ),
    no_api_key: bool = typer.Option(False, "--no-api-key", help="The endpoint needs no key (a local server)."),
    max_retries: int = typer.Option(
        5, min=0, metavar="N", help="With --base-url: retries on connection errors, 429 and 5xx."
    ),
    temperature: float = typer.Option(
        0.7, min=0.0, metavar="T", help="With --model: sampling temperature (0 = greedy)."
    ),
    max_tokens: int = typer.Option(256, min=1, metavar="N", help="With --model: tokens per reply."),
    imports: list[str] = IMPORTS,
    verbose: bool = VERBOSE,
) -> None:
    """Play an environment in the terminal: you type one action per line (Ctrl-D stops), or --model plays."""
    _import_modules(imports)
    if model is not None:
        from turngym.agent import SamplingParams

        kwargs = _parse_kwargs(kwarg)
        env, _ = _load_env(env_id, kwargs)  # a bad env id or kwarg fails here, before any model loads
        seed = 0 if seed is None else seed
        sampling = SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed)
        generator = _generator(model, backend, base_url, None if no_api_key else api_key_env, max_retries)
        _model_plays(env, env_id, kwargs, generator, sampling)
        return
    env, _ = _load_env(env_id, _parse_kwargs(kwarg))
    try:
        obs, _ = env.reset(seed=seed)
    except Exception as err:  # noqa: BLE001
        _fail(err, 1, where=_user_frame(err))
    if getattr(env, "instructions", None):
        console.print(f"[dim]{env.instructions}[/dim]")
    console.print(obs, markup=False, highlight=False)
    totals: dict[str, float] = {}
    terminated = truncated = False
    metrics: dict = {}
    while not (terminated or truncated):
        try:
            action = input("> ")
        except EOFError:
            console.print("\n(stopped: no more input)")
            break
        try:
            obs, reward, terminated, truncated, info = env.step(action)
        except Exception as err:  # noqa: BLE001 (the env broke its contract or crashed: one line, then check)
            err_console.print("[dim]`turngym check` tests the env's contract in detail[/dim]")
            _fail(err, 1, where=_user_frame(err))
        metrics = info["metrics"]
        for name, value in info["rewards"].items():
            totals[name] = totals.get(name, 0.0) + value
        console.print(obs, markup=False, highlight=False)
        console.print(f"[dim]reward {reward:+.3g}{_components(info['rewards'])}[/dim]")
    ending = "terminated" if terminated else "truncated" if truncated else "not finished"
    total = sum(env.reward_weights[k] * v for k, v in totals.items())
    console.print(
        f"Result: {'WON' if metrics.get('won') else 'not won'} after {count_of(env.turn, 'turn')} ({ending}); "
        f"total reward {total:+.4g}{_components(totals)}"
    )


def _train_epilog() -> str:
    import shutil

    from turngym.trainer.config import recipe_reference

    return (
        "Overrides: KEY=VALUE after the recipe, dotted into sections and lists: rollout.group_size=4, "
        "objective.eps_high=0.28, envs.0.kwargs.high=8, run.steps=20.\n\n"
        "Several processes: accelerate launch --multi_gpu --num_processes 2 -m turngym train RECIPE ... "
        "(on a machine without GPUs they run on CPU with gloo), "
        "or torchrun --nproc_per_node 2 -m turngym train RECIPE.\n\n"
        "Recipe reference (section.key (type, default) and what it does):\n\n"
        + recipe_reference(width=max(60, min(shutil.get_terminal_size().columns, 120) - 4))
    )


@app.command(
    "train",
    epilog="Run `turngym train --help` for the recipe reference.",
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=_Command,
)
def train(
    recipe: str = typer.Argument(..., metavar="RECIPE", help="A recipe YAML file (examples/recipes/*.yaml)."),
    overrides: list[str] = typer.Argument(
        None, metavar="KEY=VALUE...", help="Overrides, e.g. rollout.group_size=4 run.steps=20."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run directory's newest complete checkpoint (same as run.resume=auto)."
    ),
    imports: list[str] = IMPORTS,
    verbose: bool = VERBOSE,
) -> None:
    """Train a policy from a recipe (an "episode script"): rollouts, objective, AdamW, checkpoints, metrics.

    Writes runs/<recipe name>/ (recipe.yaml, metrics.jsonl, eval.jsonl, train.log, checkpoints/).
    Exit status: 0 done, 2 bad recipe (nothing written), 130 interrupted (a checkpoint was saved).
    """
    from turngym.trainer.config import RecipeError, load_recipe

    _import_modules(imports)  # for this process; the recipe's `imports:` are imported with its envs
    try:
        config = load_recipe(recipe, [*(overrides or []), *(["run.resume=auto"] if resume else [])])
        from turngym.trainer.loop import train as run_training

        result = run_training(config)
    except RecipeError as err:
        err_console.print(f"[red]recipe error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as err:
        from turngym.agent.logs import is_verbose

        log = getattr(err, "train_log", None)
        if log is None or is_verbose():
            raise
        first = (str(err).strip().splitlines() or [""])[0]
        err_console.print(
            f"[red]the run stopped:[/red] {type(err).__name__}: {escape(first)} (traceback in {log})",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(1) from None
    if result.interrupted:
        raise typer.Exit(130)


@app.command("eval", cls=_Command)
def eval_suite(
    suite_path: str = typer.Argument(..., metavar="SUITE", help="A suite YAML file (examples/suites/*.yaml)."),
    model: list[str] = typer.Option(
        ...,
        "--model",
        "-m",
        metavar="MODEL",
        help="Repeatable: an alias, a model or checkpoint directory, a run directory, or openai:MODEL@BASE_URL.",
    ),
    out: str | None = typer.Option(
        None, "--out", metavar="DIR", help="Output directory (default: evals/<suite name>); re-run to resume."
    ),
    api_key_env: str = typer.Option(
        "OPENAI_API_KEY", metavar="VAR", help="Environment variable with the endpoints' API key."
    ),
    no_api_key: bool = typer.Option(False, "--no-api-key", help="The endpoints need no key (a local server)."),
    max_model_len: int = typer.Option(
        4096, min=64, metavar="TOKENS", help="vLLM models: context length (prompt + replies)."
    ),
    kv_cache_gib: float = typer.Option(
        2.0, min=0.05, metavar="GIB", help="vLLM models: memory reserved for the KV cache."
    ),
    chunk_seeds: int = typer.Option(
        16, min=1, metavar="N", help="Seeds per batched rollout, and per write to episodes.jsonl."
    ),
    imports: list[str] = IMPORTS,
    verbose: bool = VERBOSE,
) -> None:
    """Evaluate models on a suite: a table here; report.md, report.json, plots and episodes in --out.

    Every model plays the same seeds. Exit status: 0 done, 2 bad suite or model (nothing run).
    """
    from turngym.trainer.config import RecipeError
    from turngym.trainer.eval_run import parse_model
    from turngym.trainer.suite import load_suite

    _import_modules(imports)
    try:
        suite = load_suite(suite_path)
    except (RecipeError, ValueError, OSError) as err:
        err_console.print(f"[red]suite error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        models = [parse_model(m) for m in model]  # every model is checked before any engine starts
    except (ValueError, OSError) as err:
        err_console.print(f"[red]model error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        err_console.print(f"[red]the same model twice:[/red] {labels}")
        raise typer.Exit(2)
    engine = {"max_model_len": max_model_len, "kv_cache_gib": kv_cache_gib}
    key = None if no_api_key else api_key_env
    _run_eval(suite, models, Path(out or Path("evals") / suite.name), key, engine, chunk_seeds)


def _run_eval(  # the checked `eval` arguments
    suite: SuiteConfig,
    models: list[EvalModel],
    out: Path,
    api_key_env: str | None,
    engine: dict[str, Any],
    chunk_seeds: int,
) -> None:
    """Play what is missing, then summarise everything in `out` and print the table."""
    from turngym.agent import EndpointError
    from turngym.trainer.eval_run import evaluate
    from turngym.trainer.report import print_table

    def progress(line: str) -> None:
        err_console.print(f"[dim]{escape(line)}[/dim]", highlight=False)

    try:
        report = evaluate(suite, models, out, api_key_env=api_key_env, chunk_seeds=chunk_seeds, progress=progress,
                          **engine)  # fmt: skip
    except (EndpointError, ValueError) as err:
        err_console.print(f"[red]{type(err).__name__}:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    print_table(report, console)
    plots = ", ".join(sorted(p.name for p in out.glob("*.png")))
    console.print(f"report: {out / 'report.md'} (and report.json, {plots}) in {out}", soft_wrap=True)


@app.command("export", cls=_Command)
def export(
    source: Path = typer.Argument(
        ..., metavar="CHECKPOINT", help="A checkpoint (RUN/checkpoints/step-NNNNNN), or a run directory: its newest."
    ),
    out: Path = typer.Argument(..., metavar="OUT", help="A new directory for the model."),
    verbose: bool = VERBOSE,
) -> None:
    """Write a checkpoint as a Hugging Face model directory (a LoRA adapter merged into its base model)."""
    from turngym.agent.adapters import export_model
    from turngym.trainer.checkpoint import MARKER, checkpoint_dir, checkpoint_problem, latest_checkpoint

    if checkpoint_dir(source).is_dir():
        checkpoint = latest_checkpoint(source)
        problem = None if checkpoint is not None else "it is a run directory without a complete checkpoint"
    elif (source / MARKER).is_file():
        checkpoint, problem = source, checkpoint_problem(source)
    else:
        checkpoint, problem = None, "it is neither a checkpoint (no turngym_checkpoint.json) nor a run directory"
    if problem is not None:
        err_console.print(f"[red]export:[/red] {escape(str(source))}: {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    try:
        export_model(checkpoint, out)
    except (FileExistsError, OSError, ValueError) as err:
        err_console.print(f"[red]export:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    typer.echo(str(out))
    err_console.print(f"[dim]{checkpoint} -> {out}: transformers and vLLM load it as a model[/dim]", soft_wrap=True)


@app.command("plot", cls=_Command)
def plot(
    run_dirs: list[str] = typer.Argument(
        ..., metavar="RUN_DIR...", help="One or more run directories (overlaid, with a legend)."
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        metavar="DIR",
        help="Where to write the PNGs (default: <run>/plots for one run; plots/compare-<A>-<B> in the current "
        "directory for several).",
    ),
    seeds: bool = typer.Option(
        False,
        "--seeds",
        help="Runs whose recipes differ only in run.seed (or run.dir, eval.every, checkpointing) are one line: "
        "their mean, shaded from the lowest to the "
        "highest run, labelled by the recipe keys that set the lines apart (compare methods over several seeds); "
        "seeds.md (also shown) tables each line's held-out success at each evaluated step, mean and every run.",
    ),
    verbose: bool = VERBOSE,
) -> None:
    """Write PNG learning curves of runs: reward, success, length, KL/clip, time split."""
    from turngym.trainer.plot import plot_runs

    try:
        paths = plot_runs(run_dirs, out, seeds=seeds)
    except (OSError, ValueError, TypeError, KeyError) as err:
        err_console.print(f"[red]{escape(str(err))}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for path in paths:
        if path.suffix == ".md":  # --seeds: the table of held-out success, shown here too
            err_console.print(path.read_text(), highlight=False, soft_wrap=True)
        typer.echo(str(path))


def _components(rewards: dict[str, float]) -> str:
    shown = ", ".join(f"{k}={v:.3g}" for k, v in rewards.items() if v)  # the precision of the reward beside it
    return f" ({shown})" if shown else ""


def _model_plays(env: Any, env_id: str, kwargs: dict[str, Any], generator: Any, sampling: SamplingParams) -> None:
    """One episode on seed `sampling.seed` played by a model; prints the transcript turn by turn, as it is played."""
    import itertools

    from turngym.agent import EndpointError, collect_groups

    seed = sampling.seed
    console.print(env.reset(seed=seed)[0], markup=False, highlight=False)  # the episode starts from the same seed

    def show(group_index: int, episode_index: int, turn: TurnRecord) -> None:
        console.rule(f"turn {next(turn_numbers)}")
        console.print(f"[bold cyan]model:[/bold cyan] {escape(turn.action)}", highlight=False)
        console.print(f"[bold]env:[/bold] {escape(turn.feedback)}", highlight=False)
        console.print(f"[dim]reward {turn.reward:+.3g}{_components(turn.rewards)}[/dim]")

    turn_numbers = itertools.count(1)
    try:
        [group] = collect_groups(
            env_id, [seed], 1, generator, sampling=sampling, env_kwargs=kwargs, progress=False, on_turn=show
        )
    except EndpointError as err:
        err_console.print(f"[red]{type(err).__name__}:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    [trajectory] = group.trajectories
    console.rule()
    won = trajectory.metrics.get("won", False)
    console.print(
        f"Result: {'WON' if won else 'not won'} after {count_of(trajectory.num_turns, 'turn')} "
        f"({trajectory.stop_reason}); total reward {trajectory.reward:+.4g}"
    )


def _generator(model: str, backend: str, base_url: str | None, api_key_env: str | None, max_retries: int = 5):
    """The generator `play --model` uses; a bad backend or model name exits 2 before anything loads."""
    from turngym.agent.models import ModelNotFoundError, resolve_model

    if backend not in ("vllm", "hf", "openai"):
        err_console.print(f"[red]unknown backend {backend!r}[/red]: use vllm, hf or openai")
        raise typer.Exit(2)
    if backend == "openai" or base_url is not None:
        from turngym.agent import EndpointError, OpenAIGenerator

        try:
            url = base_url or "https://api.openai.com/v1"
            return OpenAIGenerator(model, base_url=url, api_key_env=api_key_env, max_retries=max_retries)
        except EndpointError as err:
            err_console.print(f"[red]{type(err).__name__}:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    try:
        model = resolve_model(model)
    except ModelNotFoundError as err:
        err_console.print(f"[red]ModelNotFoundError:[/red] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from err
    if backend == "hf":
        from turngym.agent import HFGenerator

        return HFGenerator(model)
    from turngym.agent import VLLMGenerator

    return VLLMGenerator(model)


def _import_modules(modules: list[str]) -> None:
    """`--import`: import each module, for the env ids it registers, before any env is made; a failure exits 2."""
    from turngym.envs.registration import EnvModuleError, import_env_module

    for module in modules:
        try:
            import_env_module(module)
        except EnvModuleError as err:
            err_console.print(f"[red]import error:[/red] --import: {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


def _parse_kwargs(pairs: list[str]) -> dict:
    import yaml

    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            err_console.print(f"[red]bad --kwarg {pair!r}[/red]: expected KEY=VALUE, e.g. -k high=20")
            raise typer.Exit(2)
        try:
            kwargs[key] = yaml.safe_load(value)  # numbers, booleans and lists parse as such
        except yaml.YAMLError:
            kwargs[key] = value  # not YAML: the text itself (the env's own checks say what they expected)
    return kwargs


def _load_env(target: str, kwargs: dict, for_gymnasium: bool = False):
    """Make the env named by an id, MODULE:CLASS or path/to/file.py:CLASS; bad names exit 2 with the message.

    With `for_gymnasium`, also return the env for Gymnasium's checker: an instance made through
    `gymnasium.make` for registered ids (so it carries a spec), else a second instance; for a
    plain Gymnasium env, the env itself rather than turngym's adapter around it.
    """
    import gymnasium

    from turngym.envs import make, registry
    from turngym.envs.adapter import GymnasiumTextEnv
    from turngym.envs.registration import UnknownEnvError, import_hint
    from turngym.envs.textarena_env import EnvUnavailableError

    try:
        env = make(target, **kwargs)
        if not for_gymnasium:
            return env, None
        gym_env = gymnasium.make(target, **kwargs).unwrapped if target in registry() else make(target, **kwargs)
        return env, gym_env.env if isinstance(gym_env, GymnasiumTextEnv) else gym_env
    except UnknownEnvError as err:
        _fail(err, 2, note=import_hint(target, "--import MODULE"))
    except (EnvUnavailableError, ImportError, AttributeError, TypeError, ValueError, OSError) as err:
        _fail(err, 2, where=_user_frame(err))
    except Exception as err:  # noqa: BLE001 (the user's env module or constructor raised: say where, in one line)
        _fail(err, 2, where=_user_frame(err))


def _fail(err: BaseException, code: int, where: str = "", note: str = "") -> None:
    """Print `Type: message` (and where, for errors raised in the user's code, and a note) on stderr; exit `code`."""
    at = f" (at {where})" if where else ""
    note = f" {note}" if note else ""
    err_console.print(
        f"[red]{type(err).__name__}:[/red] {escape(str(err))}{at}{escape(note)}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(code) from None


def _user_frame(err: BaseException) -> str:
    """`file:line` of the innermost frame outside turngym and the libraries, if the error came from user code."""
    import traceback

    root = Path(__file__).resolve().parents[1]
    ours = tuple(str(root / package) for package in ("turngym", "envs", "agent", "algos", "trainer"))
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if not frame.filename.startswith((*ours, "<")) and "site-packages" not in frame.filename:
            return f"{frame.filename}:{frame.lineno}"
    return ""


def main() -> None:
    """Entry point of the `turngym` command and `python -m turngym`.

    The current directory goes on `sys.path`, as `python -m turngym` puts it there, so `--import
    my_envs`, a recipe's `imports:` and `my_envs:MyEnv` ids find a module there with either command.
    It goes last, after the installed packages, so that a `yaml.py` or `random.py` there does not
    stand in for the library of that name.
    """
    import os
    import sys

    cwd = os.getcwd()
    sys.path[:] = [*(path for path in sys.path if path not in ("", ".", cwd)), cwd]

    from turngym.agent.logs import hidden_summary

    if _subcommand(sys.argv[1:]) == "train" and {"-h", "--help"} & set(sys.argv[1:]):
        for info in app.registered_commands:  # the recipe reference imports torch: only for this help
            if info.name == "train":
                info.epilog = escape(_train_epilog())
    try:
        app()
    finally:
        if summary := hidden_summary():
            err_console.print(f"[dim]({summary})[/dim]", highlight=False, soft_wrap=True)


def _subcommand(args: list[str]) -> str | None:
    """The first argument that is not an option: the subcommand (`turngym -v train --help` -> `train`).

    `turngym`'s own options (`--version`, `--verbose`, `--help`) take no value, so none is mistaken for it.
    """
    return next((arg for arg in args if not arg.startswith("-")), None)
