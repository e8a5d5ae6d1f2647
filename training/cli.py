"""``python -m training COMMAND ...``: ``fit`` (LightningCLI) and the commands in ``COMMANDS`` (check-recipe, plan,
explore, export, publish, evaluate, embed, plot, import-legacy, releases, cards), each a plain function whose
signature and docstring jsonargparse reads. The top layer: the one place that composes pretrain, downstream,
release and plan."""

from __future__ import annotations

import importlib
import json
import sys
from argparse import ArgumentError
from typing import Any, Callable, Dict, List, Optional, Tuple

from training.pretrain.command_line import argument_error_line, lightning_cli, run_commands
from training.pretrain.fit_cli import Interrupted
from zoo.errors import ZooError

#: command name -> (module, function): every command but ``fit`` is a plain function whose signature and
#: docstring jsonargparse turns into its options (``run_commands``); ``fit`` is LightningCLI, on jsonargparse too
COMMANDS: Dict[str, Tuple[str, str]] = {
    "check-recipe": ("training.plan.check_recipe", "check_recipe_command"),
    "plan": ("training.plan.command", "plan_command"),
    "explore": ("training.explore.runner", "explore"),
    "export": ("training.release.export", "export_checkpoint"),
    "publish": ("training.release.publish", "publish"),
    "evaluate": ("training.evaluate_command", "evaluate"),
    "embed": ("training.downstream.embed_command", "embed"),
    "plot": ("training.downstream.plots", "plot_run"),
    "import-legacy": ("training.release.releases_command", "import_legacy_command"),
    "releases": ("training.release.releases_command", "releases"),
    "cards": ("training.release.cards_command", "cards"),
}


def command(name: str) -> Callable[..., Any]:
    module, function = COMMANDS[name]
    return getattr(importlib.import_module(module), function)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return guarded(lambda: run_commands({argv[0]: command(argv[0])}, argv))
    return guarded(lambda: fit(argv))


def fit(argv: List[str]) -> None:
    lightning_cli(argv)


def run_function(function: Callable[..., Any], argv: Optional[List[str]] = None) -> int:
    """``python -m training.demo`` and ``python -m training.ship_weights``: one function's options, parsed and
    reported as every command is."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = function.__name__
    return guarded(lambda: run_commands({name: function}, [name] + argv))


def guarded(call: Callable[[], Any]) -> int:
    """Run a command: its result printed (a dict as JSON), an int taken as the exit status, and every refusal as
    one ``error:`` line with status 2 (an interrupted fit: its own status)."""
    try:
        result = call()
    except ArgumentError as err:  # a value of the wrong type, an unknown option: jsonargparse's lines, as one
        print(f"error: {argument_error_line(err)} (see --help)", file=sys.stderr)
        return 2
    except ZooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"error: {stop}", file=sys.stderr)
        return stop.code
    if isinstance(result, bool) or result is None:
        return 0
    if isinstance(result, int):
        return result
    print(json.dumps(result, indent=2) if isinstance(result, dict) else result, flush=True)
    return 0
