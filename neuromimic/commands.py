"""``neuromimic analyze|bench|bodies|clips|configs|export|keypoints|view``: the commands beside ``fit``.

Each command is a function with a typed signature and a docstring whose ``Args:`` are its
help; jsonargparse reads them, as LightningCLI reads `PPOModule`'s, so each option is
declared once, where its default lives, and every command takes ``--config`` (a YAML file
of its options) and ``--print_config``. Options are spelled as the arguments are
(``--num_envs``), as ``fit``'s are.

The ``bench`` commands read a fit config's groups as ``fit`` does: ``model`` (`PPOModule`'s
arguments) and ``trainer`` (Lightning's `Trainer`), so
``neuromimic bench env --config rodent_imitation_mlp --model.env.num_envs 256`` times what
that config trains. ``bench env`` uses ``model.env`` and ``model.seed``; ``bench train``
builds the ``model`` and runs it on ``trainer.accelerator``; ``bench peer`` builds the
``model`` and compares it on the CPU; none uses fit's other settings
(``trainer.max_steps``, callbacks, logger, ``seed_everything``).

A command returns plain data, printed as one JSON document on stdout; a report with
``"passed": false`` (``bodies check``) exits with status 1.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import typing
from collections.abc import Callable

import docstring_parser
from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter, Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser

from neuromimic.analysis.perturb import perturbation_report
from neuromimic.analysis.record import record_checkpoint
from neuromimic.analysis.viewer import view
from neuromimic.bench import bench_env, bench_peer, bench_train
from neuromimic.bodies.validate import check_body, list_bodies
from neuromimic.bundled import copy_config, list_configs
from neuromimic.data.gait import write_gait_clips
from neuromimic.data.joint_reach import write_joint_reach_clips
from neuromimic.data.keypoint_clips import fit_file
from neuromimic.keypoints import KEYPOINT_FORMATS_HELP
from neuromimic.models.export import export_checkpoint
from neuromimic.training import PPOModule

#: ``{command: (help, function or {subcommand: function})}``.
COMMANDS: dict[str, tuple[str, Callable | dict[str, Callable]]] = {
    "analyze": (
        "record and analyse a trained controller",
        {"record": record_checkpoint, "perturb": perturbation_report},
    ),
    "bench": (
        "benchmarks, printed as one JSON object",
        {"env": bench_env, "train": bench_train, "peer": bench_peer},
    ),
    "bodies": ("registered body models", {"list": list_bodies, "check": check_body}),
    "clips": ("make reference clips", {"reach": write_joint_reach_clips, "gait": write_gait_clips}),
    "configs": (
        "the bundled configs: neuromimic fit --config NAME takes them by name",
        {"list": list_configs, "copy": copy_config},
    ),
    "export": ("write a checkpoint's controller as safetensors weights + JSON config (no pickle)", export_checkpoint),
    "keypoints": ("3-D keypoint files", {"fit": fit_file}),
    "view": ("a web viewer of recordings, checkpoints and reference clips", view),
}

#: The one argument of a command given by position (``bodies check KEY``, ``view
#: rollout.h5``), optional where the function gives it a default; the others are options.
POSITIONAL = {check_body: "key", copy_config: "name", view: "recording"}
#: Text shown after a command's options.
EPILOGS = {fit_file: KEYPOINT_FORMATS_HELP}

#: Options of every command that are not its function's arguments.
_FIT_CONFIG_GROUPS = ("config", "model", "trainer", "seed_everything")
#: Arguments of the bench functions that come from a fit config's groups instead.
_FROM_FIT_CONFIG = {bench_env: {"env", "seed"}, bench_train: {"module", "accelerator"}, bench_peer: {"module"}}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help, with the epilog's table kept as written."""


def _summary(function: Callable) -> str:
    return (function.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")


def _function_parser(function: Callable) -> ArgumentParser:
    """The parser of one command: its function's arguments, and for the bench commands the
    ``model`` and ``trainer`` groups of a fit config."""
    parser_class = LightningArgumentParser if function in _FROM_FIT_CONFIG else ArgumentParser
    parser = parser_class(description=_summary(function), epilog=EPILOGS.get(function), formatter_class=_HelpFormatter)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")
    if function in _FROM_FIT_CONFIG:
        parser.add_class_arguments(PPOModule, "model", fail_untyped=False, instantiate=False, sub_configs=True)
        parser.add_lightning_class_args(Trainer, "trainer")
        parser.add_argument("--seed_everything", type=bool | int, default=True, help="fit's; not used here")
    skip = set(_FROM_FIT_CONFIG.get(function, ()))
    if function in POSITIONAL:
        skip.add(_add_positional(parser, function, POSITIONAL[function]))
    parser.add_function_arguments(function, as_group=False, skip=skip)
    return parser


def _add_positional(parser: ArgumentParser, function: Callable, name: str) -> str:
    """Add ``function``'s argument ``name`` to ``parser`` as a positional, with its type and
    docstring help (an optional one must default to None); returns ``name``."""
    required = inspect.signature(function).parameters[name].default is inspect.Parameter.empty
    help = next(p.description for p in docstring_parser.parse(function.__doc__).params if p.arg_name == name)
    parser.add_argument(name, type=typing.get_type_hints(function)[name], nargs=None if required else "?", help=help)
    return name


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="neuromimic", description=__doc__.split("\n\n")[0])
    commands = parser.add_subcommands(dest="command")
    for name, (help, target) in COMMANDS.items():
        if callable(target):
            commands.add_subcommand(name, _function_parser(target), help=help)
            continue
        group = ArgumentParser(description=help)
        commands.add_subcommand(name, group, help=help)  # jsonargparse: parents first
        subcommands = group.add_subcommands(dest="subcommand")
        for subname, function in target.items():
            subcommands.add_subcommand(subname, _function_parser(function), help=_summary(function))
    return parser


def _call(function: Callable, config: Namespace) -> object:
    """``function`` called with its parsed (and instantiated) options."""
    options = {key: value for key, value in vars(config).items() if key not in _FIT_CONFIG_GROUPS}
    if function is bench_env:
        return bench_env(env=config.model.env, seed=config.model.seed, **options)
    if function is bench_train:
        return bench_train(module=PPOModule(**vars(config.model)), accelerator=config.trainer.accelerator, **options)
    if function is bench_peer:
        return bench_peer(module=PPOModule(**vars(config.model)), **options)
    return function(**options)


def main(argv: list[str]) -> None:
    """Run one command and print its result as JSON on stdout."""
    parser = _parser()
    config = parser.instantiate(parser.parse_args(argv))
    name = config.command
    target = COMMANDS[name][1]
    if callable(target):
        function, options = target, config[name]
    else:
        subcommand = config[name].subcommand
        function, options = target[subcommand], config[name][subcommand]
    result = _call(function, options)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    if isinstance(result, dict) and result.get("passed") is False:
        raise SystemExit(1)
