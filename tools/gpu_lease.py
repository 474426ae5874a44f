"""One GPU lease: every device measurement of the throughput work, as stages in two calls.

    python3 tools/gpu_lease.py --part 1     # first device call: install, MJX stages
    python3 tools/gpu_lease.py --part 2     # second call, same warm machine: Warp stages
    python tools/gpu_lease.py --cpu-smoke --part all   # every stage's code path, tiny, on a CPU
    python tools/gpu_lease.py --plan --part 1          # the stages, their budgets; runs nothing

Each stage runs in its own child process under its own timeout (a hang or a crash costs
that stage, not the lease) and appends one JSON line, ``{"stage", "part", "ok",
"seconds", "timeout_s", "result" | "error" | "skipped"}``, to the output file the moment
it ends (default ``$OUT/lease-part<N>.jsonl``), so a call stopped at its limit still
returns every finished stage; a stage killed at its timeout keeps, under ``progress``,
what it had measured. Stages, in order of priority:

- ``install``: ``pip install --no-index --no-deps --target <lease-dir>/site`` of the
  carried wheels (``.whl/lease<N>``, made by `tools/make_lease_wheels.py`); chunks of
  the Warp wheel are kept on the machine's disk until every chunk has arrived (part 2),
  then joined, checked against their SHA-256 and installed. Later stages see the
  packages through PYTHONPATH.
- ``versions``: Python, torch, JAX, MuJoCo, MJX, Warp, MuJoCo Warp, TorchRL,
  TensorDict, Lightning, GPU name and driver; fails if a package a later stage needs
  does not import.
- ``pointers:<backend>``: a step, then the torch view of qpos, qvel, act and ctrl has the
  same device address as the simulator's own buffer (`Backend.view` aliases it).
- ``nosync:<backend>``: ~0.2 s of GPU sleep (``torch.cuda._sleep``) is queued, then a
  burst of env steps is timed on the host: a host time far below the sleep means no step
  waited for the GPU.
- ``env:<backend>:<body>:<B>``: `neuromimic.bench.bench_env` (env, backend-alone and
  bare-simulator steps/s: a jitted ``lax.scan`` of ``mjx.step`` for MJX, a CUDA graph for
  Warp) with the first env steps' time beyond a steady step (compilation) and the bare
  simulator's compile time.
- ``train:<backend>:<body>:<B>``: `neuromimic.bench.bench_train` (PPO env steps/s) with
  ``evaluation=False`` (no held-out evaluation before and after training; the periodic
  validation is off in bench_train).

The rat and MyoLegs run on a 200-frame clip of their rest pose at their configs' control
rate (`rest_clip`): the physics cost does not depend on the clip. The JAX compilation
cache and the Warp kernel cache live in ``--lease-dir`` on the device's disk, shared by
the stages and by both parts on a warm machine; each stage records how many entries it
added, and a call under ``$OUT`` returns them as ``lease-caches-part<N>.tar.gz`` when
they fit in 15 MiB (a later lease carries them back). The runbook is docs/gpu_lease.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fnmatch
import hashlib
import json
import math
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LEASE_DIR = Path("/tmp/neuromimic-lease")
#: Physics steps per control step in each zoo body's config (configs/*.yaml).
ZOO_SUBSTEPS = {"rodent": 10, "myoarm": 10, "myolegs": 10, "fruitfly": 20}
#: Modules the stage processes fork from already imported (none of them touches CUDA).
PRELOAD = [
    "numpy",
    "torch",
    "jax",
    "mujoco",
    "mujoco.mjx",
    "warp",
    "mujoco_warp",
    "lightning",
    "tensordict",
    "torchrl",
    "neuromimic.bench",
    "neuromimic.training",
]
#: Packages each backend's stages import (``versions`` fails without them).
NEEDS = {
    "mujoco": ["mujoco", "torchrl", "tensordict", "neuromimic.bench", "neuromimic.training"],
    "mjx": ["jax", "mujoco.mjx"],
    "warp": ["warp", "mujoco_warp"],
}
DISTRIBUTIONS = [
    "torch",
    "jax",
    "jaxlib",
    "numpy",
    "mujoco",
    "mujoco-mjx",
    "mujoco-warp",
    "warp-lang",
    "torchrl",
    "tensordict",
    "lightning",
    "dm-control",
    "myo-sim",
]


# ----------------------------------------------------------------------------- the plan
@dataclasses.dataclass
class Stage:
    """One stage: ``kind`` runs with ``params`` in a child process under ``timeout_s``.

    ``estimate_s`` is the expected time on an H100 on a fresh machine (the runbook's
    table); a stage is skipped when less than ``min_s`` of the call's budget is left.
    """

    name: str
    kind: str
    timeout_s: float
    estimate_s: float
    params: dict = dataclasses.field(default_factory=dict)
    min_s: float = 10.0


#: (estimate, timeout) in seconds per stage and backend on an H100 on a fresh machine
#: (empty caches). NOT MEASURED: guesses from MJX's compile times on a CPU and the model
#: sizes, to be replaced by the first lease's seconds. MJX compiles every jitted function
#: again for each new number of bodies (the env's step with and without pending resets,
#: the bare scan, the bare per-step call); Warp compiles its kernels once, on the first
#: backend of a body (``pointers:warp`` pays for the mouse), and captures a graph per size.
BUDGETS: dict[str, dict[str, tuple[float, float]]] = {
    "mjx": {
        "pointers": (25, 60),
        "nosync": (10, 45),
        "env": (30, 75),
        "env-big": (45, 90),
        "train": (40, 90),
        "myolegs": (60, 100),
        "rodent": (80, 120),
        "train-small": (25, 60),
    },
    "warp": {
        "pointers": (60, 150),
        "nosync": (10, 45),
        "env": (20, 60),
        "env-big": (20, 60),
        "train": (40, 90),
        "myolegs": (50, 100),
        "rodent": (60, 120),
        "train-small": (25, 60),
    },
}
BUDGETS["mujoco"] = BUDGETS["mjx"]


def plan(
    part: str,
    backends: list[str] | None = None,
    cpu_smoke: bool = False,
    sizes: list[int] | None = None,
    train_sizes: list[int] | None = None,
    zoo: list[str] | None = None,
    zoo_size: int | None = None,
) -> list[Stage]:
    """The stages of ``part`` ("1": MJX, "2": Warp, "all": both), in order of priority:
    the GPU checks (at the first size), the mouse at each of ``sizes`` (4,096 and 16,384
    bodies), PPO at the first of ``train_sizes`` (16,384), the ``zoo`` bodies (MyoLegs and
    the rat) at ``zoo_size`` (4,096), then PPO at the other train sizes (4,096; these run
    if time is left)."""
    default = {"1": ["mjx"], "2": ["warp"], "all": ["mjx", "warp"]}[part]
    backends = backends or (["mujoco", *default] if cpu_smoke else default)
    steps, iterations = (5, 2) if cpu_smoke else (200, 5)
    sizes = sizes or ([8] if cpu_smoke else [4096, 16384])
    train = train_sizes or ([8] if cpu_smoke else [16384, 4096])
    zoo = ["myolegs", "rodent"] if zoo is None else zoo
    zoo_size = zoo_size or (8 if cpu_smoke else 4096)
    check = sizes[0]
    stages = [Stage("install", "install", 60, 10), Stage("versions", "versions", 60, 12)]
    tail = []
    for backend in backends:

        def stage(name: str, kind: str, key: str, min_s: float = 10.0, backend: str = backend, **params) -> Stage:
            estimate, timeout = BUDGETS[backend][key]
            return Stage(name, kind, timeout, estimate, {"backend": backend, **params}, min_s)

        stages += [
            stage(f"pointers:{backend}", "pointers", "pointers", num_envs=check),
            stage(f"nosync:{backend}", "nosync", "nosync", num_envs=check),
        ]
        for size in sizes:
            stages.append(
                stage(
                    f"env:{backend}:mouse_forelimb:{size}",
                    "env",
                    "env" if size <= 4096 else "env-big",
                    body="mouse_forelimb",
                    num_envs=size,
                    steps=steps,
                )
            )
        stages.append(
            stage(
                f"train:{backend}:mouse_forelimb:{train[0]}",
                "train",
                "train",
                30,
                body="mouse_forelimb",
                num_envs=train[0],
                iterations=iterations,
            )
        )
        for body in zoo:
            stages.append(
                stage(
                    f"env:{backend}:{body}:{zoo_size}",
                    "env",
                    body if body in BUDGETS[backend] else "rodent",
                    30,
                    body=body,
                    num_envs=zoo_size,
                    steps=steps,
                )
            )
        for size in train[1:]:
            tail.append(
                stage(
                    f"train:{backend}:mouse_forelimb:{size}",
                    "train",
                    "train-small",
                    30,
                    body="mouse_forelimb",
                    num_envs=size,
                    iterations=iterations,
                )
            )
    if cpu_smoke:  # MJX compiles for about a minute per function on a small CPU
        for each in stages + tail:
            each.timeout_s *= 6
    return stages + tail


# ------------------------------------------------------------------------- the runner
def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class Lease:
    """Runs stages under one deadline and writes their lines."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.start = time.monotonic()
        self.deadline = self.start + args.budget_s
        self.lease_dir = args.lease_dir
        self.out = args.out
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.lease_dir.mkdir(parents=True, exist_ok=True)
        self.context = None
        self.settings = {
            "cpu_smoke": args.cpu_smoke,
            "lease_dir": str(self.lease_dir),
            "backends": args.stage_backends,
            "nosync_steps": args.nosync_steps,
        }

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def write(self, line: dict) -> None:
        text = json.dumps(_jsonable(line))
        combined = self.lease_dir / "lease.jsonl"  # every part's lines on this machine
        for path in [self.out] + ([combined] if combined.resolve() != self.out.resolve() else []):
            with open(path, "a") as handle:
                handle.write(text + "\n")
        print(f"[lease] {text[:2000]}", flush=True)

    def _context(self):
        if self.context is None:
            if self.args.isolation == "fork":
                self.context = multiprocessing.get_context("forkserver")
                self.context.set_forkserver_preload(["__main__", *PRELOAD])
            else:
                self.context = multiprocessing.get_context("spawn")
        return self.context

    def run(self, stage: Stage) -> dict:
        line: dict[str, Any] = {
            "stage": stage.name,
            "part": self.args.part,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        timeout = self.args.timeouts.get(stage.name, stage.timeout_s)
        left = self.remaining() - self.args.reserve_s
        if left < min(stage.min_s, timeout):
            line.update(
                ok=False,
                seconds=0.0,
                skipped=f"no time left: {left:.0f} s of the call's budget remain, "
                f"the stage needs at least {min(stage.min_s, timeout):.0f} s",
            )
            self.write(line)
            return line
        timeout = min(timeout, left)
        line["timeout_s"] = round(timeout, 1)
        started = time.monotonic()
        caches = self._cache_counts()
        if stage.kind == "install":
            outcome = _install(self.args, timeout)
        else:
            outcome = self._in_child(stage, timeout)
        line["seconds"] = round(time.monotonic() - started, 2)
        line.update(outcome)
        added = {k: v - caches[k] for k, v in self._cache_counts().items() if v != caches[k]}
        if added:
            line["new_cache_entries"] = added
        self.write(line)
        return line

    def _cache_counts(self) -> dict[str, int]:
        counts = {}
        for name in ("jax-cache", "warp-cache"):
            folder = self.lease_dir / name
            counts[name] = sum(len(files) for _, _, files in os.walk(folder)) if folder.exists() else 0
        return counts

    def _in_child(self, stage: Stage, timeout: float) -> dict:
        started = time.monotonic()
        context = self._context()
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_child, args=(sender, stage.kind, stage.params, self.settings), name=stage.name, daemon=True
        )
        process.start()  # the first one waits for the fork server's imports: the timeout counts them
        sender.close()
        outcome: dict[str, Any] | None = None
        partial: dict[str, Any] = {}  # what the stage had measured, kept if it is killed
        try:
            while outcome is None:
                left = timeout - (time.monotonic() - started)
                if left <= 0 or not receiver.poll(left):
                    outcome = {"ok": False, "error": f"timeout: no result after {timeout:.0f} s; the stage was killed"}
                    break
                message = receiver.recv()
                if "progress" in message:
                    partial.update(message["progress"])
                else:
                    outcome = message
        except EOFError:
            process.join(5)
            outcome = {"ok": False, "error": f"the stage process ended without a result (exit code {process.exitcode})"}
        finally:
            if process.is_alive():
                process.join(2)
            if process.is_alive():
                process.kill()
                process.join(5)
            receiver.close()
        if partial and not outcome.get("ok"):
            outcome["progress"] = partial
        return outcome


_PROGRESS: list = []  # the stage process's end of the pipe


def progress(**values: Any) -> None:
    """Report part of a stage's result as soon as it is known (the line of a stage that
    is killed at its timeout keeps it under ``progress``)."""
    if _PROGRESS:
        _PROGRESS[0].send({"progress": _jsonable(values)})


def _child(conn, kind: str, params: dict, settings: dict) -> None:
    """A stage's process: run it, send ``{"ok", "result" | "error"}`` back."""
    _PROGRESS.append(conn)
    try:
        result = STAGES[kind](settings=settings, **params)
        ok = bool(result.pop("_ok", True))
        message: dict[str, Any] = {"ok": ok, "result": _jsonable(result)}
    except Skip as reason:
        message = {"ok": True, "skipped": str(reason)}
    except BaseException as error:  # noqa: BLE001 - everything is reported, nothing escapes
        message = {
            "ok": False,
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc()[-4000:],
        }
    conn.send(message)
    conn.close()


# --------------------------------------------------------------------------- install
def _install(args: argparse.Namespace, timeout: float) -> dict:
    """Install the carried wheels into ``<lease-dir>/site``; keep the chunks of a split
    wheel in ``<lease-dir>/stash`` until all have arrived, then join, check and install it.

    Wheels already installed by an earlier call on this machine are skipped (a marker per
    wheel in ``<lease-dir>/installed``). Besides ``--wheels``, a GPU run also looks in the
    other ``.whl/lease*`` folders of the repository copy (ignored files that an earlier
    call left there), so a part 2 whose ``/tmp`` was emptied still finds part 1's files.
    """
    site, stash, installed = (args.lease_dir / name for name in ("site", "stash", "installed"))
    if not args.wheels:
        return {
            "ok": True,
            "skipped": "no wheels given (--wheels): this Python's packages are used",
            "result": {"python": sys.executable},
        }
    missing = [str(folder) for folder in args.wheels if not folder.is_dir()]
    if missing:
        return {"ok": False, "error": f"no such wheel folder: {missing} (was it in the call's carry list?)"}
    for folder in (stash, installed):
        folder.mkdir(parents=True, exist_ok=True)
    folders = list(args.wheels) + [f for f in args.extra_wheel_dirs if f.is_dir() and f not in args.wheels]
    wheels: dict[str, Path] = {}
    for folder in folders:
        for wheel in sorted(folder.glob("*.whl")):
            wheels.setdefault(wheel.name, wheel)
        for caches in sorted(folder.glob("lease-caches*.tar.gz")):  # returned by an earlier lease
            subprocess.run(["tar", "-C", str(args.lease_dir), "-xzf", str(caches)], check=True, timeout=60)
        for chunk in folder.glob("*.chunk*of*"):
            if not (stash / chunk.name).exists():
                shutil.copy2(chunk, stash / chunk.name)
        manifest = folder / "lease.json"
        if manifest.exists():
            shutil.copy2(manifest, stash / f"lease{json.loads(manifest.read_text())['part']}.json")
    waiting: dict[str, list[str]] = {}
    for manifest in [json.loads(p.read_text()) for p in sorted(stash.glob("lease*.json"))]:
        for name, whole in manifest.get("assembled", {}).items():
            target = args.lease_dir / "assembled" / name
            if name in wheels or (installed / name).exists():
                continue
            if target.exists():
                wheels[name] = target
                continue
            parts = [stash / f"{name}.chunk{i}of{whole['chunks']}" for i in range(1, whole["chunks"] + 1)]
            absent = [p.name for p in parts if not p.exists()]
            if absent:
                waiting[name] = absent
                continue
            target.parent.mkdir(exist_ok=True)
            digest = hashlib.sha256()
            with open(target.with_suffix(".partial"), "wb") as out:
                for part in parts:
                    data = part.read_bytes()
                    digest.update(data)
                    out.write(data)
            if digest.hexdigest() != whole["sha256"]:
                return {
                    "ok": False,
                    "error": f"{name}: the joined chunks do not match its SHA-256; "
                    "make the wheels again (tools/make_lease_wheels.py) and rerun both parts",
                }
            target.with_suffix(".partial").replace(target)
            wheels[name] = target
    if args.part == "2" and waiting:
        return {
            "ok": False,
            "error": f"chunks from part 1 are missing ({waiting}): the machine was given back "
            "between the calls (or part 1 did not run); run part 1 and part 2 again, back to back",
        }
    todo = [path for name, path in sorted(wheels.items()) if not (installed / name).exists()]
    try:
        import lzma  # noqa: F401 - pip needs it for the Warp wheel's LZMA member

        lzma_ok = True
    except ImportError:
        lzma_ok = False
    result = {
        "site": str(site),
        "installed_now": [p.name for p in todo],
        "waiting_for_chunks": waiting,
        "already_installed": sorted(p.name for p in installed.iterdir()),
        "python_has_lzma": lzma_ok,
    }
    if todo:
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--upgrade",
            "--disable-pip-version-check",
            "--target",
            str(site),
            *map(str, todo),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"pip install did not finish in {timeout:.0f} s", "result": result}
        if done.returncode:
            hint = "" if lzma_ok else " (this Python has no lzma module, which the Warp wheel's LZMA member needs)"
            return {"ok": False, "error": f"pip install failed{hint}: {done.stderr[-3000:]}", "result": result}
        for path in todo:
            (installed / path.name).touch()
    result["site_mib"] = (
        round(sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / 2**20, 1) if site.exists() else 0
    )
    return {"ok": True, "result": result}


CACHE_EXPORT_LIMIT = 15 * 2**20  # the device tool returns files of up to 16 MiB


def _export_caches(lease: Lease) -> None:
    """Return the JAX compilation and Warp kernel caches as ``lease-caches-part<N>.tar.gz``
    beside the output (when under 15 MiB and time is left): carried into a later lease on
    the same kind of GPU (put it in a wheel folder), they spare its compilations."""
    args = lease.args
    folders = [name for name in ("jax-cache", "warp-cache") if (args.lease_dir / name).is_dir()]
    left = lease.remaining() - 2
    line: dict[str, Any] = {"stage": "export-caches", "part": args.part, "ok": True, "seconds": 0.0}
    target = args.out.parent / f"lease-caches-part{args.part}.tar.gz"
    if not folders or left < 8:
        line["skipped"] = "no caches" if not folders else f"no time left ({left:.0f} s)"
        lease.write(line)
        return
    started = time.monotonic()
    try:
        subprocess.run(
            ["tar", "-C", str(args.lease_dir), "-czf", str(target), *folders],
            check=True,
            capture_output=True,
            timeout=min(60.0, left),
        )
        size = target.stat().st_size
        line["result"] = {"file": target.name, "mib": round(size / 2**20, 2), "folders": folders}
        if size > CACHE_EXPORT_LIMIT:
            target.unlink()
            line["result"]["file"] = None
            line["skipped"] = "over 15 MiB: not returned"
    except (OSError, subprocess.SubprocessError) as error:
        target.unlink(missing_ok=True)
        line.update(ok=False, error=f"{type(error).__name__}: {error}")
    line["seconds"] = round(time.monotonic() - started, 2)
    lease.write(line)


def _use_site(lease_dir: Path) -> None:
    """Put the installed wheels and the repository on PYTHONPATH for the stage processes."""
    paths = [str(lease_dir / "site"), str(REPO)]
    current = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(paths + ([current] if current else []))
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)


# ---------------------------------------------------------------------------- stages
def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class Skip(Exception):
    """A stage that cannot run here (recorded as skipped with this reason, not failed)."""


def _device(settings: dict, backend: str) -> str:
    """``"cuda"``, or ``"cpu"`` with --cpu-smoke; a Warp without its CPU compiler (the
    carried wheel leaves ``warp-clang.so`` out) cannot run on a CPU: `Skip`."""
    if _cuda():
        return "cuda"
    if not settings["cpu_smoke"]:
        raise RuntimeError("no CUDA GPU here: pass --cpu-smoke to run the stages on a CPU")
    if backend == "warp":
        import warp as wp

        wp.config.quiet = True
        if not wp.is_cpu_available():
            raise Skip(
                "this Warp has no CPU compiler (warp-clang.so is left out of the carried wheel) "
                "and there is no GPU: Warp stages need one"
            )
    return "cpu"


def _sync(device) -> None:
    import torch

    if getattr(device, "type", device) == "cuda":
        torch.cuda.synchronize()


def compile_seconds(step_seconds: list[float]) -> float:
    """Seconds the first steps took beyond a steady step (the last one): their compilation.
    Several steps, since a backend may compile more than one variant of its step (MJX
    compiles a step that applies pending resets and one that does not)."""
    if len(step_seconds) < 2:
        return float("nan")
    steady = step_seconds[-1]
    return sum(max(0.0, t - steady) for t in step_seconds[:-1])


def stage_versions(settings: dict) -> dict:
    import importlib
    import importlib.metadata

    result: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    versions = {}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    result["versions"] = versions
    needed = sorted({m for b in ["mujoco", *settings["backends"]] for m in NEEDS.get(b, [])})
    failed = {}
    for module in needed:
        try:
            importlib.import_module(module)
        except BaseException as error:  # noqa: BLE001
            failed[module] = f"{type(error).__name__}: {error}"
    result["import_errors"] = failed
    import torch

    result["torch_cuda"] = torch.version.cuda
    result["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        result["gpu"] = torch.cuda.get_device_name(0)
        result["gpu_capability"] = f"{props.major}.{props.minor}"
        result["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        result["gpu_multiprocessors"] = props.multi_processor_count
    try:
        query = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        result["nvidia_smi"] = query.stdout.strip() or query.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        result["nvidia_smi"] = f"unavailable: {error}"
    if "jax" not in failed and any(b == "mjx" for b in settings["backends"]):
        import jax

        result["jax_devices"] = [str(d) for d in jax.devices()]
        result["jax_compilation_cache_dir"] = jax.config.jax_compilation_cache_dir
    if "warp" not in failed and "warp" in settings["backends"]:
        import warp as wp

        wp.config.quiet = True
        wp.init()
        result["warp"] = {
            "version": wp.config.version,
            "devices": [str(d) for d in wp.get_devices()],
            "cpu_available": wp.is_cpu_available(),
            "cuda_devices": wp.get_cuda_device_count(),
            "kernel_cache_dir": wp.config.kernel_cache_dir,
        }
    result["commit"] = os.environ.get("NEUROMIMIC_COMMIT")
    if result["commit"] is None and (REPO / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
        result["commit"] = head.stdout.strip() or None
    result["_ok"] = not failed and (torch.cuda.is_available() or settings["cpu_smoke"])
    if not (torch.cuda.is_available() or settings["cpu_smoke"]):
        result["error"] = "torch sees no CUDA GPU"
    return result


def simulator_pointers(backend) -> dict[str, int]:
    """Device addresses of the simulator's own qpos, qvel, act and ctrl buffers."""
    if hasattr(backend, "buffer_pointers"):
        return dict(backend.buffer_pointers())
    data = getattr(backend, "data", None) or getattr(backend, "wp_data", None)  # MJX / MuJoCo Warp
    pointers = {}
    for field in ("qpos", "qvel", "act", "ctrl"):
        array = getattr(data, field, None)
        if array is None:
            continue
        if hasattr(array, "unsafe_buffer_pointer"):  # JAX
            pointers[field] = int(array.unsafe_buffer_pointer())
        elif hasattr(array, "ptr"):  # Warp
            pointers[field] = int(array.ptr)
    return pointers


def stage_pointers(settings: dict, backend: str, num_envs: int) -> dict:
    """One step, then each torch view's address against the simulator buffer's."""
    import numpy as np
    import torch

    from neuromimic.bodies import get_body
    from neuromimic.physics import make_backend

    device = None if backend == "mujoco" else _device(settings, backend)
    start = time.perf_counter()
    sim = make_backend(backend, get_body("mouse_forelimb"), num_envs, substeps=2, device=device)
    build_s = time.perf_counter() - start
    progress(build_s=build_s)
    ctrl = torch.rand(num_envs, sim.model.nu, device=sim.device)
    times = []
    for _ in range(4):
        _sync(sim.device)
        start = time.perf_counter()
        sim.step(ctrl)
        _sync(sim.device)
        times.append(time.perf_counter() - start)
        progress(step_s=times)
    view = sim.view
    fields = {}
    if backend == "mujoco":  # views into the rollout's float64 state buffer
        state = sim.state
        low, high = state.ctypes.data, state.ctypes.data + state.nbytes
        for name in ("qpos", "qvel", "act"):
            pointer = getattr(view, name).data_ptr()
            fields[name] = {"view": hex(pointer), "buffer": f"{hex(low)}..{hex(high)}", "equal": low <= pointer < high}
        assert isinstance(state, np.ndarray)
    else:
        for name, pointer in simulator_pointers(sim).items():
            mine = getattr(view, name).data_ptr()
            fields[name] = {"view": hex(mine), "simulator": hex(pointer), "equal": mine == pointer}
    checked = [f["equal"] for f in fields.values()]
    return {
        "backend": backend,
        "num_envs": num_envs,
        "device": str(sim.device),
        "fields": fields,
        "all_equal": bool(checked) and all(checked),
        "build_s": build_s,
        "step_s": times,
        "compile_s": compile_seconds(times),
        "_ok": bool(checked) and all(checked),
    }


def stage_nosync(settings: dict, backend: str, num_envs: int, sleep_s: float = 0.2) -> dict:
    """Queue ``sleep_s`` of GPU sleep, then time a burst of env steps on the host."""
    import warnings

    import torch

    from neuromimic.envs import EnvConfig, make_env

    steps = settings["nosync_steps"]
    device = "cpu" if backend == "mujoco" else _device(settings, backend)
    start = time.perf_counter()
    env = make_env(EnvConfig(backend=backend, num_envs=num_envs), split=None, device=device)
    build_s = time.perf_counter() - start
    progress(build_s=build_s)
    actions = torch.rand(steps + 4, *env.action_spec.shape, device=env.device)
    td = env.reset()
    warmup = []
    for i in range(4):  # compile and warm up outside the probe
        start = time.perf_counter()
        td["action"] = actions[i]
        _, td = env.step_and_maybe_reset(td)
        _sync(env.device)
        warmup.append(time.perf_counter() - start)
        progress(warmup_step_s=warmup)

    def burst() -> float:
        nonlocal td
        begin = time.perf_counter()
        for i in range(steps):
            td["action"] = actions[4 + i]
            _, td = env.step_and_maybe_reset(td)
        return time.perf_counter() - begin

    result: dict[str, Any] = {
        "backend": backend,
        "num_envs": num_envs,
        "steps": steps,
        "device": str(env.device),
        "build_s": build_s,
        "warmup_step_s": warmup,
        "compile_s": compile_seconds(warmup),
    }
    with env.stepping():
        result["host_burst_s"] = burst()  # no sleep queued: the host's own cost
        _sync(env.device)
        if env.device.type != "cuda":
            result["skipped_checks"] = {"sleep_probe": "no CUDA device: torch.cuda._sleep needs one"}
            return result
        # Cycles per second of the GPU's clock, from one timed sleep.
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        torch.cuda._sleep(20_000_000)
        end.record()
        end.synchronize()
        cycles_per_s = 20_000_000 / (begin.elapsed_time(end) / 1e3)
        torch.cuda.synchronize()
        start = time.perf_counter()
        torch.cuda._sleep(int(sleep_s * cycles_per_s))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                host_s = burst()
            finally:
                torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize()
        total_s = time.perf_counter() - start
    waited = host_s > result["host_burst_s"] + 0.5 * sleep_s
    result.update(
        sleep_s=sleep_s,
        host_with_sleep_s=host_s,
        until_done_s=total_s,
        torch_sync_warnings=[str(w.message)[:200] for w in caught][:5],
        host_waited=waited,
        note="host_with_sleep_s near host_burst_s: no step waited for the GPU; near sleep_s: one did "
        "(or the launch queue filled: rerun with fewer --nosync-steps)",
    )
    result["_ok"] = not waited and total_s >= 0.9 * sleep_s
    return result


def rest_clip(key: str, directory: Path) -> str:
    """A 200-frame clip of body ``key`` at rest, at its config's control rate; its path."""
    import numpy as np

    from neuromimic.bodies import get_body
    from neuromimic.bodies.validate import coupled_pose
    from neuromimic.data.clips import ReferenceClip

    path = directory / f"{key}_rest.h5"
    if path.exists():
        return str(path)
    directory.mkdir(parents=True, exist_ok=True)
    body = get_body(key)
    model = body.load_model()
    rest = coupled_pose(model, body.rest_qpos(model))[0]
    fps = 1.0 / (ZOO_SUBSTEPS[key] * model.opt.timestep)
    partial = directory / f"{key}_rest.partial.h5"
    ReferenceClip.from_qpos(key, np.tile(rest, (200, 1)), fps, name="rest", split="train").save(partial)
    partial.replace(path)
    return str(path)


def _instrument_bench(timings: dict) -> None:
    """Time, inside `bench_env`, the env build, its first steps (compilation) and each bare
    simulator call (its compilation: the call's wall time less the time it returns)."""
    from neuromimic import bench

    original = bench.make_env

    def make_env(*args, **kwargs):
        start = time.perf_counter()
        env = original(*args, **kwargs)
        timings["env_build_s"] = time.perf_counter() - start
        progress(env_build_s=timings["env_build_s"])
        step, bare = env.step_and_maybe_reset, env.backend.bare_seconds
        steps = timings.setdefault("warmup_step_s", [])

        def timed_step(td):
            if len(steps) >= 4:
                return step(td)
            _sync(env.device)
            begin = time.perf_counter()
            out = step(td)
            _sync(env.device)
            steps.append(time.perf_counter() - begin)
            progress(warmup_step_s=steps)
            return out

        def timed_bare(ctrl, per_control_step: bool = False):
            begin = time.perf_counter()
            seconds = bare(ctrl, per_control_step=per_control_step)
            wall = time.perf_counter() - begin
            # open loop: one compile-and-run call, then the timed run; closed loop: one
            # compile call of the first step, then the timed loop
            key = "bare_per_control_step" if per_control_step else "bare"
            timings[f"{key}_compile_s"] = wall - seconds * (1 if per_control_step else 2)
            timings[f"{key}_s"] = seconds
            progress(**{f"{key}_compile_s": timings[f"{key}_compile_s"], f"{key}_s": seconds})
            return seconds

        try:
            env.step_and_maybe_reset = timed_step
            env.backend.bare_seconds = timed_bare
        except (AttributeError, TypeError) as error:
            timings["instrumentation"] = f"not instrumented: {error}"
        return env

    bench.make_env = make_env


def stage_env(settings: dict, backend: str, body: str, num_envs: int, steps: int) -> dict:
    from neuromimic.bench import bench_env
    from neuromimic.envs import EnvConfig

    if backend != "mujoco":
        _device(settings, backend)
    kwargs: dict[str, Any] = {}
    if body != "mouse_forelimb":
        kwargs = {"substeps": ZOO_SUBSTEPS[body], "clips": rest_clip(body, Path(settings["lease_dir"]) / "clips")}
    timings: dict[str, Any] = {}
    _instrument_bench(timings)
    start = time.perf_counter()
    result = bench_env(EnvConfig(body=body, backend=backend, num_envs=num_envs, **kwargs), steps=steps)
    result["stage_wall_s"] = time.perf_counter() - start
    timings["env_compile_s"] = compile_seconds(timings.get("warmup_step_s", []))
    result["timings"] = timings
    return result


def stage_train(settings: dict, backend: str, body: str, num_envs: int, iterations: int) -> dict:
    from neuromimic.bench import bench_train
    from neuromimic.envs import EnvConfig
    from neuromimic.training import ppo

    if backend != "mujoco":
        _device(settings, backend)
    builds = []
    original = ppo.make_env

    def make_env(*args, **kw):
        begin = time.perf_counter()
        env = original(*args, **kw)
        builds.append(
            {
                "split": kw.get("split"),
                "num_envs": env.batch_size[0] if env.batch_size else None,
                "seconds": time.perf_counter() - begin,
            }
        )
        progress(env_builds=builds)
        return env

    ppo.make_env = make_env
    start = time.perf_counter()
    module = ppo.PPOModule(env=EnvConfig(body=body, backend=backend, num_envs=num_envs))
    result = bench_train(module, iterations=iterations, evaluation=False)
    wall = time.perf_counter() - start
    # bench_train trains with the default PPO settings: its timed seconds follow from them
    rollout_steps = ppo.PPOConfig().rollout_steps
    timed = result["iterations_timed"] * num_envs * rollout_steps / result["train_env_steps_per_s"]
    result.update(stage_wall_s=wall, timed_s=timed, untimed_s=wall - timed, env_builds=builds)
    return result


STAGES = {
    "versions": stage_versions,
    "pointers": stage_pointers,
    "nosync": stage_nosync,
    "env": stage_env,
    "train": stage_train,
}


# ------------------------------------------------------------------------------ main
def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=["1", "2", "all"],
        default="all",
        help="1: install + MJX stages; 2: Warp's second chunk + Warp stages; all: both",
    )
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on a CPU; GPU-only checks skipped")
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=["mujoco", "mjx", "warp"],
        help="backends of the plan (default: mjx for part 1, warp for part 2; --cpu-smoke adds mujoco)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="mouse bodies of the env stages (default 4096 16384)")
    parser.add_argument(
        "--train-sizes",
        type=int,
        nargs="+",
        help="mouse bodies of the PPO stages (default 16384 4096; the second runs last)",
    )
    parser.add_argument(
        "--zoo",
        nargs="*",
        choices=sorted(ZOO_SUBSTEPS),
        help="zoo bodies benchmarked on a rest-pose clip (default myolegs rodent)",
    )
    parser.add_argument("--zoo-size", type=int, help="bodies of the zoo stages (default 4096)")
    parser.add_argument(
        "--stages",
        nargs="+",
        metavar="GLOB",
        help="run only the stages whose names match one of these (fnmatch) patterns",
    )
    parser.add_argument(
        "--timeout",
        nargs="+",
        default=[],
        metavar="GLOB=SECONDS",
        help="override the timeout of the stages matching GLOB",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        help="seconds this call may take in all (default 280, for a 300 s device call; 1800 with --cpu-smoke)",
    )
    parser.add_argument("--reserve-s", type=float, default=3.0, help="kept back from the budget (default 3)")
    parser.add_argument(
        "--wheels",
        nargs="*",
        type=Path,
        help="carried wheel folders to install (default .whl/lease<part> on a GPU, none with --cpu-smoke)",
    )
    parser.add_argument(
        "--lease-dir",
        type=Path,
        default=DEFAULT_LEASE_DIR,
        help="site, wheel chunks, caches and clips on the machine's disk (kept between warm calls)",
    )
    parser.add_argument("--out", type=Path, help="the JSON-lines file (default $OUT/lease-part<N>.jsonl)")
    parser.add_argument(
        "--isolation",
        choices=["fork", "spawn"],
        default="fork",
        help="fork: stage processes fork from a server that imported torch, JAX, MuJoCo... "
        "once (default); spawn: each stage imports everything itself",
    )
    parser.add_argument("--nosync-steps", type=int, default=5, help="env steps in the no-sync burst (default 5)")
    parser.add_argument(
        "--export-caches",
        action=argparse.BooleanOptionalAction,
        help="return the compile caches as lease-caches-part<N>.tar.gz beside the output when "
        "under 15 MiB (default: on when $OUT is set, off with --cpu-smoke)",
    )
    parser.add_argument("--plan", action="store_true", help="print the stages and their budgets, run nothing")
    args = parser.parse_args(argv)
    stages = plan(args.part, args.backends, args.cpu_smoke, args.sizes, args.train_sizes, args.zoo, args.zoo_size)
    if args.stages:
        stages = [s for s in stages if s.kind == "install" or any(fnmatch.fnmatch(s.name, p) for p in args.stages)]
    args.plan_stages = stages
    if args.export_caches is None:
        args.export_caches = bool(os.environ.get("OUT")) and not args.cpu_smoke
    if args.budget_s is None:
        args.budget_s = 1800.0 if args.cpu_smoke else 280.0
    args.stage_backends = sorted(
        {s.params["backend"] for s in stages if "backend" in s.params} or set(args.backends or [])
    )
    args.timeouts = {}
    for item in args.timeout:
        pattern, _, seconds = item.rpartition("=")
        for stage in stages:
            if fnmatch.fnmatch(stage.name, pattern):
                args.timeouts[stage.name] = float(seconds)
    carried = [REPO / ".whl" / "lease1", REPO / ".whl" / "lease2"]
    args.extra_wheel_dirs = []
    if args.wheels is None:
        args.wheels = (
            [] if args.cpu_smoke else (carried if args.part == "all" else [REPO / ".whl" / f"lease{args.part}"])
        )
        args.extra_wheel_dirs = [] if args.cpu_smoke else carried
    if args.out is None:
        base = Path(os.environ["OUT"]) if os.environ.get("OUT") else args.lease_dir
        args.out = base / f"lease-part{args.part}.jsonl"
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.plan:
        total = 0.0
        print(f"{'stage':40s} {'estimate s':>10s} {'timeout s':>10s}")
        for stage in args.plan_stages:
            total += stage.estimate_s
            print(f"{stage.name:40s} {stage.estimate_s:10.0f} {args.timeouts.get(stage.name, stage.timeout_s):10.0f}")
        print(f"{'total':40s} {total:10.0f}   budget {args.budget_s:.0f}")
        return 0
    lease_dir = args.lease_dir
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(lease_dir / "jax-cache"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    os.environ.setdefault("WARP_CACHE_PATH", str(lease_dir / "warp-cache"))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    lease = Lease(args)
    failures = 0
    for stage in args.plan_stages:
        line = lease.run(stage)
        if stage.kind == "install":
            _use_site(lease_dir)
            if not line["ok"]:
                for later in args.plan_stages[1:]:
                    lease.write(
                        {
                            "stage": later.name,
                            "part": args.part,
                            "ok": False,
                            "seconds": 0.0,
                            "skipped": "the install stage failed",
                        }
                    )
                return 1
        failures += not line["ok"]
    if args.export_caches:
        _export_caches(lease)
    if args.part == "2" or args.part == "all":
        # both parts' lines, for the file committed under tools/benchmarks/
        combined, target = lease_dir / "lease.jsonl", args.out.with_name("lease.jsonl")
        if combined.exists() and combined.resolve() != target.resolve():
            shutil.copy2(combined, target)
    print(
        f"[lease] {len(args.plan_stages) - failures} of {len(args.plan_stages)} stages ok; "
        f"{time.monotonic() - lease.start:.0f} s; lines in {args.out}",
        flush=True,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
