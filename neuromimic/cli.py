"""The ``neuromimic`` command.

``neuromimic fit|validate|test|predict`` is a LightningCLI over `PPOModule` and accepts
every LightningCLI flag (``--config``, ``--print_config``, ``--trainer.max_steps``,
``--ckpt_path last``, ``--trainer.strategy ddp``); ``--config`` also takes the name of a
bundled config (``neuromimic fit --config mouse_forelimb_reach_mlp``, see
`neuromimic.bundled`). The other commands (``analyze``, ``bench``, ``bodies``, ``clips``,
``configs``, ``export``, ``keypoints``: `neuromimic.commands`) are jsonargparse parsers of
typed functions, dispatched before LightningCLI sees the arguments.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from neuromimic import commands
from neuromimic.bundled import resolve_config_args
from neuromimic.checkpoint_files import CheckpointError, load_checkpoint_file
from neuromimic.errors import INPUT_ERROR_EXIT_CODE, find_input_error
from neuromimic.training import PPOModule
from neuromimic.training.checkpoint_io import AtomicCheckpointIO

log = logging.getLogger("neuromimic")

#: Exit status after SIGTERM (128 + 15, as a shell reports a process ended by SIGTERM): the
#: run saved ``last.ckpt`` and asks to be requeued (see the README's reliability section);
#: in a SLURM job it also requeues itself with ``scontrol requeue``, as Lightning does.
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM


def find_last_checkpoint(save_dir: str | Path, name: str) -> tuple[Path, int]:
    """The newest ``<save_dir>/<name>/version_N/checkpoints/last.ckpt`` and its N.

    Raises:
        CheckpointError: if no run under that directory has a ``last.ckpt``.
    """
    root = Path(save_dir) / name
    found = []
    for ckpt in root.glob("version_*/checkpoints/last.ckpt"):
        match = re.fullmatch(r"version_(\d+)", ckpt.parent.parent.name)
        if match:
            found.append((ckpt.stat().st_mtime, int(match.group(1)), ckpt))
    if not found:
        raise CheckpointError(
            f"--ckpt_path last: no last.ckpt under {root}/version_*/checkpoints/. "
            "Run without --ckpt_path to start a new run, or pass a checkpoint file."
        )
    _, version, ckpt = max(found)
    return ckpt, version


class NeuromimicCLI(LightningCLI):
    """LightningCLI with the project's defaults and ``--ckpt_path last`` resolution."""

    def _parse_ckpt_path(self) -> None:
        """Verify a ``--ckpt_path`` file, and never read a config out of it.

        LightningCLI's own version parses a checkpoint's ``hyper_parameters`` into the run's
        config, which imports and calls whatever classes they name: a shared checkpoint
        could run code. A neuromimic run's config comes from the command line and its
        files alone; the checkpoint gives weights and states (read by `AtomicCheckpointIO`).
        """
        config = self.config.get(self.config.get("subcommand") or "", None)
        ckpt_path = config.get("ckpt_path") if config is not None else None
        if ckpt_path and ckpt_path != "last":
            load_checkpoint_file(ckpt_path)

    def before_instantiate_classes(self) -> None:
        """Make the default logger explicit; resolve ``--ckpt_path last`` to a file and keep
        logging in that run's folder.

        The default logger is Lightning's (TensorBoard, under ``--trainer.default_root_dir``,
        ``lightning_logs/version_N``), named ``version_N`` also under SLURM, where Lightning
        would name it after the job: ``--ckpt_path last`` looks for the newest ``version_N``.
        """
        config = self.config.get(self.subcommand)
        if config is None:
            return
        trainer = config.trainer
        logger = trainer.logger
        if logger in (None, True):
            logger = Namespace(
                class_path="lightning.pytorch.loggers.TensorBoardLogger",
                init_args=Namespace(save_dir=trainer.get("default_root_dir") or ".", name="lightning_logs"),
            )
            trainer.logger = logger
        if config.get("ckpt_path") != "last":
            return
        if not (isinstance(logger, Namespace) and logger.class_path.endswith("TensorBoardLogger")):
            raise CheckpointError("--ckpt_path last needs trainer.logger to be a TensorBoardLogger")
        args = logger.init_args
        ckpt, version = find_last_checkpoint(args.save_dir, args.get("name") or "lightning_logs")
        log.info("resuming from %s", ckpt)
        config.ckpt_path = str(ckpt)
        args.version = version

    def instantiate_trainer(self, **kwargs):
        """The configured Trainer, writing and reading checkpoints with `AtomicCheckpointIO`.

        On a SLURM cluster, SLURM's requeue signal (SIGUSR1) is handled as SIGTERM:
        Lightning's own handler would save a checkpoint from inside the signal handler, in
        the middle of a rollout, which cannot be resumed exactly.
        """
        trainer = super().instantiate_trainer(**kwargs)
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if SLURMEnvironment.detect():
            signal.signal(signal.SIGUSR1, _stop_as_if_terminated)
        return trainer


def _stop_as_if_terminated(signum: int, frame: object) -> None:
    """Turn a signal into SIGTERM, which Lightning handles between optimiser steps."""
    log.info("received signal %d: stopping as for SIGTERM", signum)
    os.kill(os.getpid(), signal.SIGTERM)


def _requeue_slurm_job() -> None:
    """``scontrol requeue`` this SLURM job (from its first task only), as Lightning's SLURM
    environment does; the requeued job runs the same batch script again."""
    if not SLURMEnvironment.detect() or os.environ.get("SLURM_PROCID", "0") != "0":
        return
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID")
    if not job:
        return
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        log.error("could not requeue SLURM job %s: scontrol is not on PATH", job)
        return
    if result.returncode == 0:
        log.info("requeued SLURM job %s", job)
    else:
        log.error("scontrol requeue %s failed (%d): %s", job, result.returncode, result.stderr.strip())


def _trainer_defaults() -> dict:
    # Logger and checkpoint callback come from the config files (see configs/).
    return {"num_sanity_val_steps": 0, "log_every_n_steps": 1}


# Lightning warnings that do not apply here: PPOModule's checkpoints are taken after an
# optimiser step by design, and its one-epoch-per-iteration loader is never split over
# workers.
_IGNORED_WARNINGS = (
    r"Using ModelCheckpoint with manual optimization",
    r"Your `IterableDataset` has `__len__` defined",
    # main() passes sys.argv on (without --debug) as args: that is what the warning fears.
    r"LightningCLI's args parameter is intended",
)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``neuromimic`` console script.

    Bad input (`neuromimic.errors.InputError`: a file, config field or flag, also when
    jsonargparse re-raises it while building the config's classes) is reported as one
    message and exit status 2; ``--debug`` anywhere on the command line, or
    ``NEUROMIMIC_DEBUG=1``, shows its traceback instead. Other exceptions are bugs and keep
    theirs.
    """
    for message in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("NEUROMIMIC_DEBUG", "") not in ("", "0")
    args = [arg for arg in args if arg != "--debug"]
    try:
        args = resolve_config_args(args)  # --config NAME of a bundled config -> its file
        if args and args[0] in commands.COMMANDS:
            commands.main(args)
            return
        NeuromimicCLI(
            PPOModule,
            trainer_defaults=_trainer_defaults(),
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except SIGTERMException:
        log.error(
            "stopped by SIGTERM after saving last.ckpt; exiting with %d so that a scheduler "
            "requeues the job (resume it with --ckpt_path last)",
            PREEMPTED_EXIT_CODE,
        )
        _requeue_slurm_job()
        raise SystemExit(PREEMPTED_EXIT_CODE) from None
    except Exception as error:
        input_error = find_input_error(error)
        if input_error is None or debug:
            raise
        log.error("%s", input_error)
        raise SystemExit(INPUT_ERROR_EXIT_CODE) from None


if __name__ == "__main__":
    main()
