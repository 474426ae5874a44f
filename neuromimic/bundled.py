"""Files shipped with the package: the model files we author and the configs.

In the checkout they are the top-level folders ``assets/`` (MJCF) and ``configs/`` (YAML);
``pyproject.toml`` maps them to the subpackages ``neuromimic.assets`` and
``neuromimic.configs``, so a wheel installs them inside the package and an editable install
finds them in the checkout. Code finds them here (`asset_path`, `config_path`).

``neuromimic fit --config NAME`` takes a bundled config by name (`resolve_config_args`);
``neuromimic configs list`` lists them and ``neuromimic configs copy NAME`` copies one out to
edit. Bundled reference clips are data of `neuromimic.data.clips` (``bundled:<name>``).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from neuromimic.errors import InputError, did_you_mean

#: Config file suffixes: ``--config NAME.yaml`` names the same bundled config as ``NAME``.
CONFIG_SUFFIXES = (".yaml", ".yml")
#: A value of ``--config`` that may name a bundled config: one word, no path separator and no
#: YAML syntax (jsonargparse also takes an inline YAML document there, which is left alone).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: The config flags of LightningCLI (``-c`` and ``--config``, also as ``--config=VALUE``).
_CONFIG_FLAGS = ("-c", "--config")


def _package_dir(name: str) -> Path:
    """The folder of the data subpackage ``neuromimic.<name>``: ``neuromimic/<name>`` in a
    wheel, ``<checkout>/<name>`` in an editable install, and the same folder where the
    checkout is on ``sys.path`` uninstalled (``PYTHONPATH=<checkout>``, as
    ``tools/gpu_lease.py`` runs on a device machine)."""
    import importlib

    try:
        module = importlib.import_module(f"neuromimic.{name}")
    except ModuleNotFoundError as error:
        beside = Path(__file__).resolve().parents[1] / name
        if error.name != f"neuromimic.{name}" or not (beside / "__init__.py").is_file():
            raise
        return beside
    return Path(next(iter(module.__path__)))


def assets_dir() -> Path:
    """The folder of the model files we author (``assets/`` in the checkout)."""
    return _package_dir("assets")


def asset_path(name: str) -> Path:
    """The path of a bundled model file, e.g. ``asset_path("mouse_forelimb.xml")``."""
    return assets_dir() / name


def configs_dir() -> Path:
    """The folder of the bundled configs (``configs/`` in the checkout)."""
    return _package_dir("configs")


def bundled_configs() -> dict[str, Path]:
    """Every bundled config by name: ``mouse_forelimb_reach_mlp`` for the training configs,
    ``perturbations/remove_spindle_ia`` for those below a folder."""
    root = configs_dir()
    found = {}
    for path in sorted(root.rglob("*")):
        if path.suffix in CONFIG_SUFFIXES and path.is_file():
            found[path.relative_to(root).with_suffix("").as_posix()] = path
    return found


def _config_kind(name: str) -> str:
    return "perturbation" if name.startswith("perturbations/") else "fit"


def _description(path: Path) -> str:
    """The first paragraph of the config's header comment (it says what the config trains),
    up to an empty comment line or an indented one (a command)."""
    words = []
    for line in path.read_text().splitlines():
        text = line.removeprefix("#")
        if not line.startswith("#") or not text.strip() or text.startswith("  "):
            break
        words.append(text.strip())
    return " ".join(words)


def config_path(name: str, *, is_path: bool = False) -> Path:
    """The file of a bundled config, by name (a ``.yaml`` suffix is allowed).

    Args:
        name: the config's name, as ``neuromimic configs list`` shows it.
        is_path: whether ``name`` was given where a file path is taken too (``--config``):
            the error then says that no such file exists either.

    Raises:
        InputError: if no bundled config has that name; the message lists them.
    """
    known = bundled_configs()
    key = name
    for suffix in CONFIG_SUFFIXES:
        key = key.removesuffix(suffix)
    if key in known:
        return known[key]
    fit_names = [n for n in known if _config_kind(n) == "fit"]
    where = f"--config {name}: no such file, and no" if is_path else f"{name}: no"
    fix = " Pass a path to a YAML file, or one of these names." if is_path else ""
    raise InputError(
        f"{where} bundled config of that name{did_you_mean(key, known)}; bundled configs: "
        f"{', '.join(fit_names)} (neuromimic configs list).{fix}"
    )


def _resolve_config_value(value: str) -> str:
    """A ``--config`` value as LightningCLI should see it: a bundled config's path where the
    value is a bare name that is not a file here; anything else unchanged."""
    if os.path.exists(value) or not _NAME.fullmatch(value):
        return value
    return str(config_path(value, is_path=True))


def resolve_config_args(args: list[str]) -> list[str]:
    """``args`` with every ``--config NAME`` (``-c NAME``, ``--config=NAME``) of a bundled
    config replaced by its file, before LightningCLI (which takes a path) parses them.

    A value that is an existing file, a path with a folder in it or an inline YAML document is
    passed on unchanged, so ``--config configs/x.yaml`` works as before.

    Raises:
        InputError: for a bare name that is neither a file here nor a bundled config.
    """
    resolved = list(args)
    for i, arg in enumerate(resolved):
        if arg in _CONFIG_FLAGS and i + 1 < len(resolved):
            resolved[i + 1] = _resolve_config_value(resolved[i + 1])
        elif arg.startswith("--config="):
            resolved[i] = "--config=" + _resolve_config_value(arg.removeprefix("--config="))
    return resolved


def config_use(name: str, file: str | Path | None = None) -> str:
    """The command that uses a bundled config: by name, or as the ``file`` it was copied to."""
    if _config_kind(name) == "fit":
        return f"neuromimic fit --config {file or name}"
    if file is None:
        return f"neuromimic configs copy {name}, then neuromimic analyze perturb --perturbation {Path(name).name}.yaml"
    return f"neuromimic analyze perturb --perturbation {file}"


def list_configs() -> list[dict[str, str]]:
    """What ``neuromimic configs list`` prints: every bundled config's name, what it is
    for, how to use it, and its installed file."""
    return [
        {"name": name, "description": _description(path), "use": config_use(name), "file": str(path)}
        for name, path in bundled_configs().items()
    ]


def copy_config(name: str, dest: str | None = None, force: bool = False) -> dict[str, str]:
    """Copy a bundled config out to edit (then ``--config <file>``).

    Args:
        name: bundled config name (``neuromimic configs list``).
        dest: file to write, or a folder (one that exists, or a path ending in /); default
            ./NAME.yaml.
        force: overwrite an existing file.

    Returns:
        ``{"name", "written": the file, "use": the command that uses it}``.

    Raises:
        InputError: for an unknown name, or a file already at the destination (unless
            ``force``).
    """
    source = config_path(name)
    target = Path(dest) if dest is not None else Path(source.name)
    if target.is_dir() or str(dest).endswith(("/", os.sep)):
        target = target / source.name
    if target.exists() and not force:
        raise InputError(f"{target} exists; pass --force to overwrite it, or another destination")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return {"name": name, "written": str(target), "use": config_use(name, target)}
