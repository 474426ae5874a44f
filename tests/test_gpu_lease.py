"""The GPU lease script (tools/gpu_lease.py) and its wheel set (tools/make_lease_wheels.py),
on the CPU: stages run in their own processes and each writes its line, a stage past its
timeout is recorded as failed while later ones still run, and the carried wheels are
slimmed, split over two calls and joined again as pip expects."""

import base64
import csv
import hashlib
import importlib.util
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


lease = _load("gpu_lease")
wheels = _load("make_lease_wheels")


def _run(tmp_path: Path, *args: str, timeout: float = 300) -> list[dict]:
    out = tmp_path / "lease.jsonl"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "gpu_lease.py"),
            "--cpu-smoke",
            "--lease-dir",
            str(tmp_path / "lease"),
            "--out",
            str(out),
            *args,
        ],
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_every_stage_writes_its_line_and_a_timeout_does_not_stop_the_rest(tmp_path):
    lines = _run(
        tmp_path,
        "--part",
        "1",
        "--backends",
        "mujoco",
        "--stages",
        "versions",
        "pointers:*",
        "nosync:*",
        "env:*:mouse_forelimb:*",
        "train:*",
        "--timeout",
        "env:*=0.01",
    )
    by_stage = {line["stage"]: line for line in lines}
    assert list(by_stage) == [
        "install",
        "versions",
        "pointers:mujoco",
        "nosync:mujoco",
        "env:mujoco:mouse_forelimb:8",
        "train:mujoco:mouse_forelimb:8",
    ]
    timed_out = by_stage.pop("env:mujoco:mouse_forelimb:8")
    assert timed_out["ok"] is False and timed_out["error"].startswith("timeout")
    for name, line in by_stage.items():
        assert line["ok"] is True, (name, line)
        assert "result" in line or line.get("skipped"), (name, line)
    assert by_stage["install"]["skipped"]  # --cpu-smoke installs nothing
    assert by_stage["pointers:mujoco"]["result"]["all_equal"] is True
    nosync = by_stage["nosync:mujoco"]["result"]
    assert nosync["host_burst_s"] > 0 and "sleep_probe" in nosync["skipped_checks"]
    train = by_stage["train:mujoco:mouse_forelimb:8"]["result"]
    assert train["train_env_steps_per_s"] > 0 and train["held_out_evaluation"] is False


def test_plan_covers_the_issue_and_fits_the_calls():
    for part, backend in (("1", "mjx"), ("2", "warp")):
        stages = lease.plan(part)
        names = [s.name for s in stages]
        assert names[:2] == ["install", "versions"]
        for name in (
            f"pointers:{backend}",
            f"nosync:{backend}",
            f"env:{backend}:mouse_forelimb:4096",
            f"env:{backend}:mouse_forelimb:16384",
            f"train:{backend}:mouse_forelimb:16384",
            f"env:{backend}:rodent:4096",
            f"env:{backend}:myolegs:4096",
        ):
            assert name in names
        # the GPU checks, the mouse and PPO at 16,384 take at most 2/3 of a 280 s call by
        # the estimates; the zoo bodies and PPO at 4,096 get what is left
        mouse = names.index(f"train:{backend}:mouse_forelimb:16384") + 1
        assert sum(s.estimate_s for s in stages[:mouse]) <= 2 / 3 * 280
        assert all(s.timeout_s <= 150 for s in stages)
        assert names[-1] == f"train:{backend}:mouse_forelimb:4096"


def test_carried_pins_match_pyproject():
    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["mjx"]]
    for requirement in declared:
        name = wheels.canonical(requirement.name)
        if name in wheels.CARRIED:
            assert requirement.specifier.contains(wheels.CARRIED[name]), (requirement, wheels.CARRIED[name])
    assert {"mujoco", "mujoco-mjx", "mujoco-warp", "warp-lang", "torchrl", "tensordict"} <= set(wheels.CARRIED)


def _fake_wheel(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    """A minimal wheel ``name``-1.0 with ``files`` and a correct RECORD."""
    info = f"{name}-1.0.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
        wheel.writestr(f"{info}/RECORD", record.getvalue())
    return path


def test_slimmed_wheels_split_over_two_calls_install_with_pip(tmp_path):
    """A slimmed wheel (a file dropped, one stored with LZMA) keeps a correct RECORD; split
    over two folders, the install stage of part 1 keeps its chunk, part 2 joins and checks
    both and pip installs the result."""
    source, slim, out = tmp_path / "source", tmp_path / "slim", tmp_path / "carry"
    for folder in (source, slim):
        folder.mkdir()
    big = bytes(range(256)) * 4096
    fake_warp = _fake_wheel(
        source,
        "fakewarp",
        {
            "fakewarp/__init__.py": b"VALUE = 1\n",
            "fakewarp/bin/core.so": big,
            "fakewarp/bin/cpu-only.so": b"x" * 1000,
            "fakewarp/tests/test_a.py": b"",
        },
    )
    rule = {"drop": ["fakewarp/bin/cpu-only.so", "fakewarp/tests/"], "lzma": ["fakewarp/bin/core.so"]}
    slimmed = wheels.slim(fake_warp, rule, slim)
    wheels.verify_record(slimmed)
    with zipfile.ZipFile(slimmed) as wheel:
        assert wheel.getinfo("fakewarp/bin/core.so").compress_type == zipfile.ZIP_LZMA
        assert "fakewarp/bin/cpu-only.so" not in wheel.namelist()
    other = _fake_wheel(source, "fakeother", {"fakeother/__init__.py": b"VALUE = 2\n"})
    late = _fake_wheel(source, "fakelate", {"fakelate/__init__.py": b"VALUE = 3\n"})
    manifests = wheels.split_parts([other], slimmed, [late], out, budget=10 * 2**20)
    assert [m["part"] for m in manifests] == [1, 2]

    lease_dir = tmp_path / "lease"
    for part in ("1", "2"):
        result = tmp_path / f"part{part}.jsonl"
        subprocess.run(
            [
                sys.executable,
                str(REPO / "tools" / "gpu_lease.py"),
                "--cpu-smoke",
                "--part",
                part,
                "--wheels",
                str(out / f"lease{part}"),
                "--lease-dir",
                str(lease_dir),
                "--out",
                str(result),
                "--stages",
                "none",
            ],
            cwd=REPO,
            timeout=120,
            check=False,
        )
        (install,) = [json.loads(line) for line in result.read_text().splitlines()]
        assert install["ok"] is True, install
        if part == "1":
            assert install["result"]["waiting_for_chunks"] == {slimmed.name: [f"{slimmed.name}.chunk2of2"]}
    site = lease_dir / "site"
    assert (site / "fakewarp" / "bin" / "core.so").read_bytes() == big
    assert not (site / "fakewarp" / "bin" / "cpu-only.so").exists()
    assert (site / "fakeother").is_dir() and (site / "fakelate").is_dir()
