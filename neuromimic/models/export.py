"""Export a trained controller as plain files, and load it back without running foreign code.

An export is a directory with two files and no pickle in either:

- ``controller.safetensors``: every parameter and buffer of the controller;
- ``controller.json``: ``{"format", "version", "controller": <config>, "spec": <spec>,
  "metadata": {...}, "weights_sha256": <hex>}``, where ``<config>`` names the controller
  and core classes and their constructor arguments (`Controller.config`), ``<spec>`` the
  observation layout, action size and control step (`ControllerSpec.to_dict`), and
  ``weights_sha256`` the SHA-256 of the weights file as written (a flipped bit is caught
  when it is read; exports written before this hash existed load with a warning).

`load_controller` rebuilds the module from the JSON, resolving class names only through
the registry below (never importing what a file names), and loads the weights; given a
Lightning checkpoint instead, it reads it with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load, save
from torch import nn

from neuromimic.errors import InputError
from neuromimic.models.base import ControllerSpec, Core, CoreFactory
from neuromimic.models.controller import Controller, IntentionController
from neuromimic.models.cores import GRUCore, LSTMCore, MLPCore
from neuromimic.models.rate_rnn import RateRNNCore

FORMAT = "neuromimic-controller"
VERSION = 1
WEIGHTS_FILE = "controller.safetensors"
CONFIG_FILE = "controller.json"

log = logging.getLogger(__name__)

#: The only classes a config may name.
CONTROLLERS = {"Controller": Controller, "IntentionController": IntentionController}
CORES = {"MLPCore": MLPCore, "GRUCore": GRUCore, "LSTMCore": LSTMCore, "RateRNNCore": RateRNNCore}


def register_core(cls: type[Core]) -> type[Core]:
    """Make a custom core loadable from exports and checkpoints (usable as a decorator).

    The class must implement `Core.config`, returning ``{"class": cls.__name__, ...}``
    with the keyword arguments that rebuild it.
    """
    CORES[cls.__name__] = cls
    return cls


class ControllerLoadError(InputError):
    """A controller file cannot be used; the message names the file and what is wrong."""


def _pick(registry: dict[str, type], config: dict, source: str) -> tuple[type, dict]:
    if not isinstance(config, dict) or "class" not in config:
        raise ControllerLoadError(f"{source}: expected an object with a 'class' entry, got {config!r}")
    kwargs = dict(config)
    name = kwargs.pop("class")
    if not isinstance(name, str) or name not in registry:
        raise ControllerLoadError(f"{source}: unknown class {name!r}; known: {sorted(registry)}")
    return registry[name], kwargs


def core_factory(config: dict, source: str = "controller config") -> CoreFactory:
    """The factory ``(input_size, control_dt) -> Core`` described by a core's `config`."""
    cls, kwargs = _pick(CORES, config, source)
    return functools.partial(cls, **kwargs)


def build_controller(config: dict, spec: ControllerSpec, source: str = "controller config") -> Controller:
    """A freshly initialised controller from its `Controller.config` and spec."""
    cls, kwargs = _pick(CONTROLLERS, config, source)
    for key in ("core", "decoder"):
        if key in kwargs:
            kwargs[key] = core_factory(kwargs[key], f"{source} ({key})")
    try:
        return cls(spec, **kwargs)
    except TypeError as error:
        raise ControllerLoadError(f"{source}: {error}") from error


def export_controller(controller: Controller, output: str | Path, metadata: dict | None = None) -> Path:
    """Write ``controller`` as ``output/controller.safetensors`` and ``output/controller.json``.

    Args:
        controller: the controller to export.
        output: the directory. Both files are written into a new sibling directory that
            then replaces ``output``, so a crash never leaves weights and config that do not
            belong together.
        metadata: JSON-serialisable notes stored with it (body, clips, source checkpoint...).

    Returns:
        The directory.
    """
    output = Path(output)
    tensors = {name: value.detach().cpu().contiguous() for name, value in controller.state_dict().items()}
    weights = save(tensors)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "controller": controller.config(),
        "spec": controller.spec.to_dict(),
        "metadata": metadata or {},
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        (staging / WEIGHTS_FILE).write_bytes(weights)
        (staging / CONFIG_FILE).write_text(json.dumps(document, indent=2))
        if output.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{output.name}.old.", dir=output.parent))
            os.replace(output, retired / output.name)
            os.replace(staging, output)
            shutil.rmtree(retired)
        else:
            os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def load_controller(path: str | Path, map_location: str | torch.device = "cpu") -> Controller:
    """A trained controller as a plain `torch.nn.Module`, in eval mode.

    ``action, state = controller(observation, state)``; ``controller.spec`` holds the
    observation layout (``controller.spec.observation_slices()`` gives name -> slice).

    Args:
        path: an export directory (or its ``controller.json``) or a Lightning checkpoint
            (``.ckpt``) written by ``neuromimic fit``.
        map_location: device of the returned module.

    Raises:
        ControllerLoadError: the files are missing, malformed, or do not match.
        neuromimic.checkpoint_files.CheckpointError: an unreadable checkpoint
            (pickled code in it is refused, never run).
    """
    path = Path(path)
    if not path.exists():
        raise ControllerLoadError(
            f"{path} does not exist; give an export directory (neuromimic export) or a checkpoint (.ckpt)"
        )
    if path.is_dir() or path.name == CONFIG_FILE:
        controller, state, source = _read_export(path if path.is_dir() else path.parent)
    else:
        controller, state, source = _read_checkpoint(path)
    try:
        controller.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ControllerLoadError(f"{source}: the weights do not fit the described controller: {error}") from None
    return controller.to(map_location).eval()


def load_action_map(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """The mapping from a trained controller's actions to its body's controls, as the env
    that trained it applied it (`neuromimic.tasks.actions.ActionMap`).

    ``ctrl = action_map(squash(loc), reference_qpos)``, with ``reference_qpos`` [B, nq]
    the reference pose of the frame the control step ends on (used by
    ``reference_relative`` actions; ``None`` for ``absolute`` ones).

    Args:
        path: an export directory or a checkpoint, as for `load_controller`.
        map_location: device of the returned module.
    """
    from neuromimic.bodies import get_body
    from neuromimic.tasks.actions import action_term

    controller = load_controller(path)
    body = controller_metadata(path).get("body")
    if body is None:
        raise ControllerLoadError(f"{path} does not say which body it drives (no 'body' metadata); re-export it")
    term, params = action_term(controller.spec.action_term)
    model = get_body(body).load_model()
    return term.make(model, **params).to(map_location)


def controller_metadata(path: str | Path) -> dict:
    """The notes stored with a controller (body, env config, source...): the ``metadata``
    of an export, or what ``neuromimic fit`` wrote into a checkpoint."""
    path = Path(path)
    if path.is_dir() or path.name == CONFIG_FILE:
        config_path = path / CONFIG_FILE if path.is_dir() else path
        try:
            return dict(json.loads(config_path.read_text()).get("metadata") or {})
        except (OSError, json.JSONDecodeError, AttributeError) as error:
            raise ControllerLoadError(f"{config_path}: cannot read its metadata: {error}") from None
    from neuromimic.checkpoint_files import load_checkpoint_file

    return dict(load_checkpoint_file(path).get("neuromimic", {}).get("controller", {}).get("metadata") or {})


def export_checkpoint(ckpt: str, output: str) -> dict:
    """Write a checkpoint's controller as safetensors weights and a JSON config (no pickle).

    Args:
        ckpt: a checkpoint written by neuromimic fit.
        output: directory for controller.safetensors and controller.json.

    Returns:
        ``{"output": directory, "controller": its config, "metadata": what the export records}``.
    """
    controller = load_controller(ckpt)
    metadata = {"source_checkpoint": str(ckpt), **controller_metadata(ckpt)}
    directory = export_controller(controller, output, metadata)
    return {"output": str(directory), "controller": controller.config(), "metadata": metadata}


def _read_export(directory: Path) -> tuple[Controller, dict, str]:
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for file in (config_path, weights_path):
        if not file.is_file():
            raise ControllerLoadError(
                f"{file} does not exist; an export holds {CONFIG_FILE} and {WEIGHTS_FILE} "
                "(write one with `neuromimic export --ckpt FILE --output DIR`)"
            )
    try:
        document = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ControllerLoadError(f"{config_path} is not valid JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ControllerLoadError(f"{config_path} is not a neuromimic controller export (format {FORMAT!r})")
    if document.get("version") != VERSION:
        raise ControllerLoadError(
            f"{config_path} has export version {document.get('version')!r}; this neuromimic reads version {VERSION}"
        )
    controller = _build(document, str(config_path))
    weights = weights_path.read_bytes()
    expected = document.get("weights_sha256")
    if expected is None:
        log.warning("%s has no weights_sha256 (an older export): %s cannot be verified", config_path, weights_path)
    elif hashlib.sha256(weights).hexdigest() != expected:
        raise ControllerLoadError(
            f"{weights_path} does not match the weights_sha256 in {config_path}: the weights "
            "were corrupted or replaced after export; export the checkpoint again"
        )
    try:
        state = load(weights)
    except Exception as error:  # noqa: BLE001 (safetensors raises its own types for corrupt files)
        raise ControllerLoadError(f"{weights_path} cannot be read: {error}") from None
    return controller, state, str(weights_path)


def _read_checkpoint(path: Path) -> tuple[Controller, dict, str]:
    from neuromimic.checkpoint_files import load_checkpoint_file

    checkpoint = load_checkpoint_file(path)
    document = checkpoint.get("neuromimic", {}).get("controller")
    if document is None:
        raise ControllerLoadError(f"{path} holds no controller description (not written by neuromimic fit?)")
    controller = _build(document, str(path))
    state = {
        name.removeprefix("controller."): value
        for name, value in checkpoint["state_dict"].items()
        if name.startswith("controller.")
    }
    return controller, state, str(path)


def _build(document: dict, source: str) -> Controller:
    try:
        spec = ControllerSpec.from_dict(document["spec"])
    except (KeyError, TypeError, ValueError) as error:
        raise ControllerLoadError(f"{source}: malformed 'spec' entry: {error}") from None
    config = dict(document.get("controller") or {})
    config.pop("decoder_from", None)  # the weights come from the file itself
    return build_controller(config, spec, source)
