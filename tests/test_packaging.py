"""Packaging: the top-level ``assets/`` and ``configs/`` ship in the wheel, ``--config NAME``
takes a bundled config, ``neuromimic configs list|copy``; and a wheel built from the
checkout installs into a fresh venv and trains the default config by name from an empty
folder."""

import json
import logging
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from neuromimic import bundled
from neuromimic.errors import INPUT_ERROR_EXIT_CODE, InputError

REPO = Path(__file__).resolve().parents[1]
DEFAULT = "mouse_forelimb_reach_mlp"
#: The tiny run of tests/conftest.py's tiny_fit, two optimiser steps.
TINY = (
    "--trainer.enable_progress_bar",
    "false",
    "--model.env.num_envs",
    "8",
    "--model.ppo.rollout_steps",
    "16",
    "--model.ppo.epochs",
    "1",
    "--model.ppo.minibatches",
    "2",
    "--trainer.max_steps",
    "2",
    "--trainer.check_val_every_n_epoch",
    "100",
)


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _data_files(folder: Path) -> set[str]:
    """The files of a data folder that must ship, relative to it (not Python, not caches)."""
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }


def test_pyproject_lists_every_package():
    """[tool.setuptools] packages is a list (a mapped folder cannot be found by
    packages.find): it must name every package of the source tree, and only those."""
    setuptools = _pyproject()["tool"]["setuptools"]
    mapped = setuptools["package-dir"]
    assert mapped == {"neuromimic.assets": "assets", "neuromimic.configs": "configs"}
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "neuromimic").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    missing = found - set(setuptools["packages"])
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    for package in setuptools["packages"]:
        folder = REPO / mapped.get(package, package.replace(".", "/"))
        assert (folder / "__init__.py").is_file(), f"{package}: no {folder}/__init__.py"


def test_assets_and_configs_are_found_through_the_package():
    from neuromimic.bodies import get_body

    assert get_body("mouse_forelimb").mjcf_path == bundled.asset_path("mouse_forelimb.xml")
    assert bundled.asset_path("mouse_forelimb.xml").is_file()
    assert bundled.configs_dir().samefile(REPO / "configs")  # the editable install reads the checkout
    names = bundled.bundled_configs()
    assert DEFAULT in names and "perturbations/remove_spindle_ia" in names
    assert {f"{n}.yaml" for n in names} == _data_files(REPO / "configs")


def test_the_checkout_on_pythonpath_without_an_install_finds_them_too(tmp_path):
    """``PYTHONPATH=<checkout>`` and no install (tools/gpu_lease.py on a device machine):
    ``-S`` leaves out site-packages, and with them the editable install's finder."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"} | {"PYTHONPATH": str(REPO)}
    code = "import neuromimic.bundled as b; print(b.asset_path('mouse_forelimb.xml')); print(b.configs_dir())"
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [Path(p) for p in out] == [REPO / "assets" / "mouse_forelimb.xml", REPO / "configs"]


def test_config_name_resolves_to_the_bundled_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = str(bundled.config_path(DEFAULT))
    assert bundled.resolve_config_args(["fit", "--config", DEFAULT, "--x", "1"]) == [
        "fit",
        "--config",
        path,
        "--x",
        "1",
    ]
    assert bundled.resolve_config_args(["fit", "-c", f"{DEFAULT}.yaml"]) == ["fit", "-c", path]
    assert bundled.resolve_config_args(["fit", f"--config={DEFAULT}"]) == ["fit", f"--config={path}"]
    # Paths, inline YAML and a file of that name in the working folder are LightningCLI's.
    for value in ("configs/mouse_forelimb_reach_mlp.yaml", "{trainer: {max_steps: 2}}", "/no/such.yaml"):
        assert bundled.resolve_config_args(["fit", "--config", value]) == ["fit", "--config", value]
    (tmp_path / DEFAULT).write_text("trainer: {}\n")
    assert bundled.resolve_config_args(["fit", "--config", DEFAULT]) == ["fit", "--config", DEFAULT]


def test_unknown_config_name_is_one_message_listing_the_bundled_ones(tmp_path, monkeypatch, caplog):
    from neuromimic.cli import main

    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.ERROR, logger="neuromimic"), pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "mouse_forelimb_reach_mpl"])
    assert exit_info.value.code == INPUT_ERROR_EXIT_CODE
    (message,) = [r.getMessage() for r in caplog.records if r.name == "neuromimic"]
    assert "--config mouse_forelimb_reach_mpl: no such file" in message
    assert "did you mean 'mouse_forelimb_reach_mlp'?" in message
    assert "myoarm_reach_mlp" in message and "neuromimic configs list" in message


def test_configs_list_and_copy(tmp_path, monkeypatch, capsys):
    from neuromimic.cli import main

    monkeypatch.chdir(tmp_path)
    main(["configs", "list"])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[DEFAULT]["use"] == f"neuromimic fit --config {DEFAULT}"
    assert rows[DEFAULT]["description"].startswith("Mouse forelimb imitating")
    assert Path(rows[DEFAULT]["file"]) == bundled.config_path(DEFAULT)

    main(["configs", "copy", DEFAULT])
    assert json.loads(capsys.readouterr().out)["written"] == f"{DEFAULT}.yaml"
    assert (tmp_path / f"{DEFAULT}.yaml").read_text() == bundled.config_path(DEFAULT).read_text()
    with pytest.raises(InputError, match="exists; pass --force"):
        bundled.copy_config(DEFAULT)
    assert bundled.copy_config(DEFAULT, force=True)["written"] == f"{DEFAULT}.yaml"
    assert bundled.copy_config("perturbations/remove_spindle_ia", "edits/")["written"] == "edits/remove_spindle_ia.yaml"
    assert bundled.copy_config(DEFAULT, str(tmp_path / "mine.yaml"))["written"] == str(tmp_path / "mine.yaml")
    with pytest.raises(InputError, match="nope: no bundled config of that name; bundled configs: .*myoarm"):
        bundled.copy_config("nope")


def _checkout_copy(dest: Path) -> Path:
    """The checkout's files as a fresh clone with the working tree's changes would have them
    (git's tracked and untracked, not ignored, files): building in the checkout itself would
    leave build/ there, whose stale files setuptools puts into later wheels."""
    try:
        listed = (
            subprocess.run(
                ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                cwd=REPO,
                capture_output=True,
                check=True,
            )
            .stdout.decode()
            .split("\0")
        )
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: copy all but outputs
        shutil.copytree(
            REPO,
            dest,
            ignore=shutil.ignore_patterns(
                ".git",
                "build",
                "dist",
                "*.egg-info",
                "lightning_logs",
                "__pycache__",
                ".*_cache",
                ".whl",
            ),
        )
        return dest
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.mark.slow
def test_wheel_installs_and_trains_the_default_config_by_name_from_an_empty_folder(tmp_path):
    """Build the wheel, install it (alone, --no-deps) in a venv that borrows this
    environment's dependencies, and use it from empty folders: the body's MJCF and the
    configs come from the wheel, and ``neuromimic fit --config NAME`` trains."""
    source = _checkout_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(dist),
        ],
        check=True,
    )
    (wheel,) = dist.glob("neuromimic-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {n.split("/")[0] for n in names} == {"neuromimic", wheel.name.split("-py3")[0] + ".dist-info"}
    for folder in ("assets", "configs"):
        shipped = {n.removeprefix(f"neuromimic/{folder}/") for n in names if n.startswith(f"neuromimic/{folder}/")}
        assert _data_files(REPO / folder) <= shipped, f"{folder}/ files missing from the wheel"
    assert _data_files(REPO / "neuromimic/data/clips") <= {n.removeprefix("neuromimic/data/clips/") for n in names}

    # --system-site-packages: torch, mujoco and the rest come from this environment, nothing is
    # downloaded. Its site-packages also holds this checkout's editable install, whose finder
    # comes after the normal path search on sys.meta_path; --ignore-installed installs the
    # wheel into the venv even so (and never touches the editable install), and the venv's
    # site-packages come first on sys.path, so the venv imports the wheel (asserted below).
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False, symlinks=os.name != "nt")
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
        check=True,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "NEUROMIMIC_DEBUG")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"

    def run(folder: Path, *argv: str, timeout: float = 300) -> str:
        folder.mkdir(exist_ok=True)
        result = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr[-4000:]}"
        return result.stdout

    installed = env_dir.resolve()
    probe = json.loads(
        run(
            tmp_path / "probe",
            str(python),
            "-c",
            (
                "import json, neuromimic, neuromimic.bundled as b; from neuromimic.bodies import get_body; "
                "body = get_body('mouse_forelimb'); model = body.load_model(); "
                "print(json.dumps({'package': neuromimic.__file__, 'mjcf': str(body.mjcf_path), "
                "'configs': str(b.configs_dir()), 'nu': model.nu}))"
            ),
        )
    )
    for key in ("package", "mjcf", "configs"):
        assert Path(probe[key]).resolve().is_relative_to(installed), f"{key} not from the wheel: {probe[key]}"
    assert Path(probe["mjcf"]).name == "mouse_forelimb.xml" and probe["nu"] == 9

    neuromimic = str(bin_dir / "neuromimic")
    rows = json.loads(run(tmp_path / "list", neuromimic, "configs", "list"))
    assert DEFAULT in {row["name"] for row in rows}
    assert all(Path(row["file"]).resolve().is_relative_to(installed) for row in rows)
    copied = json.loads(run(tmp_path / "copy", neuromimic, "configs", "copy", DEFAULT))
    assert (tmp_path / "copy" / copied["written"]).read_text() == (REPO / "configs" / f"{DEFAULT}.yaml").read_text()

    empty = tmp_path / "empty"
    run(empty, neuromimic, "fit", "--config", DEFAULT, *TINY)
    run_dir = empty / "lightning_logs" / "version_0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "clips: bundled:mouse_forelimb_reach" in (run_dir / "config.yaml").read_text()
