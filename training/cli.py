"""``python -m training fit|check-recipe|plan|explore|export|publish|evaluate|embed|plot|import-legacy|releases ...``:
LightningCLI for training (``check-recipe`` runs a recipe through it on synthetic images, ``plan`` counts what it
costs, ``explore`` runs grids of fits, see ``training.explore``), jsonargparse for the rest."""

from __future__ import annotations

import contextvars
import functools
import json
import sys
from argparse import ArgumentError
from typing import Any, Callable, List, Optional

from training.pretrain.fit_cli import Interrupted
from zoo.errors import ZooError

COMMANDS = ("export", "publish", "evaluate", "embed", "plot", "import-legacy", "releases")


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


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "check-recipe":
            from training.check_recipe import main as check_recipe

            print(json.dumps(check_recipe(argv[1:])), flush=True)
        elif argv and argv[0] == "explore":
            from training.explore.runner import main as explore

            return explore(argv[1:])
        elif argv and argv[0] == "plan":
            from training.plan.command import main as plan

            plan(argv[1:])
        elif argv and argv[0] in COMMANDS:
            from jsonargparse import auto_cli

            from training.downstream.embed_command import embed
            from training.downstream.evaluate import evaluate
            from training.downstream.plots import plot_run
            from training.release.export import export_checkpoint
            from training.release.publish import publish
            from training.release.releases_command import import_legacy_command, releases

            commands = {"export": export_checkpoint, "publish": publish, "evaluate": evaluate, "embed": embed,
                        "plot": plot_run, "import-legacy": import_legacy_command, "releases": releases}
            if argv[0] == "releases":
                argv = [{"--json": "--json_output=true", "--markdown": "--markdown=true"}.get(a, a) for a in argv]
            result = auto_cli(commands, args=dashes_to_underscores(argv), exit_on_error=False)
            if isinstance(result, dict):
                print(json.dumps(result, indent=2))
            elif result is not None:
                print(result)
        else:
            lightning_cli(argv)
    except ArgumentError as err:  # a value of the wrong type, an unknown option: jsonargparse's lines, as one
        print(f"error: {argument_error_line(err)} (see --help)", file=sys.stderr)
        return 2
    except ZooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"error: {stop}", file=sys.stderr)
        return stop.code
    return 0
