"""The command-line plumbing every command shares: the ``fit`` command line (LightningCLI over jsonargparse, the
one parser style of the project), option spelling, and one-line argument errors. At the bottom layer so that
``plan``'s ``check-recipe``, the demo and the top-level ``training.cli`` build fits the same way."""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import typing
from argparse import ArgumentError
from typing import Any, Callable, Dict, List, Mapping, Optional


def lightning_cli(args: List[str], run: bool = True, cli_class: Optional[Callable[..., Any]] = None):
    """The ``fit`` command line (``cli_class`` defaults to ``ZooCLI``; check-recipe passes its subclass)."""
    from training.pretrain.data import ImageDataModule
    from training.pretrain.fit_cli import AtomicSaveConfig, ZooCLI, ZooTrainer
    from training.pretrain.module import ContrastiveModule
    from training.pretrain.progress import ProgressLine
    from training.pretrain.resume import ResumableTraining

    # ResumableTraining is always on: atomic checkpoints, and RNG state saved with them for exact resumption
    # (config.yaml is written atomically too: AtomicSaveConfig);
    # ProgressLine replaces Lightning's bar (``--trainer.enable_progress_bar true`` brings the bar back)
    build = functools.partial((cli_class or ZooCLI), ContrastiveModule, ImageDataModule, subclass_mode_data=True,
                              args=args, run=run, trainer_class=ZooTrainer, save_config_callback=AtomicSaveConfig,
                              save_config_kwargs={"overwrite": True}, parser_kwargs={"exit_on_error": False},
                              trainer_defaults={"callbacks": [ResumableTraining(), ProgressLine()],
                                                "enable_progress_bar": False})
    # in a copy of the caller's context: jsonargparse leaves its last parser in a context variable, and the parser
    # holds the CLI, so in a process that runs several fits (check-recipe, explore, the tests) the last run's
    # trainer, model and optimizer state would stay in memory after the caller let go of them
    return contextvars.copy_context().run(build)


def dashes_to_underscores(argv: List[str]) -> List[str]:
    """``--repo-id x`` and ``--repo_id x`` both work (jsonargparse names options after the Python arguments)."""
    out = []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + eq + value
        out.append(arg)
    return out


def argument_error_line(err: ArgumentError) -> str:
    """jsonargparse's message in one line; for a value nested in a class (``--data.init_args.batch_size x``),
    the innermost key and what was expected, without the union alternatives around it."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    inner = text.rfind('Parser key "')
    if text.count('Parser key "') > 1 and inner >= 0:
        text = text[inner:].split(" - Expected a <class 'NoneType'>")[0]
    return text


#: option spellings kept from before every command went through jsonargparse: ``--json`` names another
#: parameter where ``json`` would shadow the module
ALIASES: Dict[str, Dict[str, str]] = {"releases": {"--json": "--json_output"}, "plan": {"--json": "--json_out"}}
TRUTH = {"true", "false", "yes", "no", "1", "0"}


def bare_flags(argv: List[str], function: Callable[..., Any]) -> List[str]:
    """Spellings argparse users expect, as jsonargparse reads them: ``--all`` for ``--all=true`` (a boolean given
    without a value) and ``--methods a b`` for ``--methods=["a", "b"]`` (a list given as words)."""
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # a hint that does not resolve: no spellings to adapt  # noqa: BLE001
        hints = {}
    kinds = {name: str(hint) for name, hint in hints.items()}
    flags = {name for name, hint in hints.items() if hint is bool}
    lists = {name for name, kind in kinds.items() if "List[" in kind or "list[" in kind}
    out: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        following = argv[i + 1].lower() if i + 1 < len(argv) else None
        if arg.startswith("--") and arg[2:] in flags and following not in TRUTH:
            arg += "=true"
        elif arg.startswith("--") and arg[2:] in lists and following is not None and not following.startswith("["):
            words = []
            while i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                words.append(argv[i + 1])
                i += 1
            arg = f"{arg}={json.dumps(words)}"
        out.append(arg)
        i += 1
    return out


def command_arguments(commands: Mapping[str, Callable[..., Any]], argv: List[str]) -> List[str]:
    """``argv`` (``NAME --option value ...``) as jsonargparse reads it for ``commands[NAME]``: aliases resolved,
    dashes in option names turned to underscores, bare boolean flags given their value."""
    name, rest = argv[0], argv[1:]
    aliases = ALIASES.get(name, {})

    def resolved(arg: str) -> str:
        option, eq, value = arg.partition("=")
        return aliases.get(option, option) + eq + value

    rest = [resolved(a) if a.startswith("--") else a for a in rest]
    first = next(iter(inspect.signature(commands[name]).parameters.values()), None)
    if rest and not rest[0].startswith("-") and first is not None and first.default is not first.empty:
        rest = [f"--{first.name}={rest[0]}"] + rest[1:]  # an optional leading word: ``plan RECIPE`` or ``--all``
    return [name] + bare_flags(dashes_to_underscores(rest), commands[name])


def run_commands(commands: Mapping[str, Callable[..., Any]], argv: List[str]) -> Any:
    """Parse ``argv`` with jsonargparse (the one parser style of every command: LightningCLI is built on it too)
    against the commands' signatures and docstrings, and call the chosen one."""
    from jsonargparse import auto_cli

    # a fresh dict of auto_cli's own value type (Callable | type | nested dict): its annotation asks for that dict,
    # and a dict of functions is not one (dict is invariant), though auto_cli only reads it
    return auto_cli(dict(commands), args=command_arguments(commands, argv), exit_on_error=False)
