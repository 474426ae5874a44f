"""The wheels a GPU lease carries (`tools/gpu_lease.py`), in two carry folders of at most
64 MiB each, working tree included.

    python tools/make_lease_wheels.py            # downloads, slims, splits, verifies
    python tools/make_lease_wheels.py --list     # what is carried and why, no downloads

The device image (Python 3.12, torch 2.11, jax 0.11.2 with CUDA, Lightning, ...) lacks
MuJoCo, MJX, MuJoCo Warp, Warp, TorchRL, TensorDict and the two wheels our zoo bodies are
read from. This script

1. downloads the cp312 manylinux wheels of `CARRIED` (``pip download --no-deps``) and
   checks that every requirement of every carried wheel is either carried or in the
   image (`IMAGE_PACKAGES`, the device page's package list), so nothing is missing there;
2. rebuilds some of them without files a CUDA benchmark never opens (`SLIM`): MuJoCo's
   experimental viewer and Filament renderer, test data, Warp's CPU compiler
   ``warp/bin/warp-clang.so`` (Warp loads it only if the file exists and compiles CUDA
   kernels with the NVRTC inside ``warp.so``), the dm-control wheel down to the rat's two
   files, the myo-sim wheel down to MyoLegs' meshes. Each rebuilt wheel keeps its name,
   its metadata and a RECORD that lists exactly its files with their original hashes, so
   pip installs it as usual. Warp's ``warp.so`` (285 MiB, 110 MiB deflated) is stored
   with LZMA (zip method 14, which pip's zipfile reads): about 74 MiB;
3. splits the set into ``.whl/lease1`` and ``.whl/lease2`` (ignored by ``/.whl/`` in
   .gitignore): part 1 holds every wheel but MuJoCo Warp and the first chunk of the Warp
   wheel, part 2 the rest of the Warp wheel and MuJoCo Warp, sized so that both parts are
   about equal and each, with the working tree, stays under the device tool's 64 MiB.
   ``lease.json`` in each folder lists its wheels and chunks and the SHA-256 of the whole
   Warp wheel; `tools/gpu_lease.py` joins the chunks on the device's disk in the second
   call and checks that hash before it installs;
4. verifies each wheel's RECORD against its contents, the joined chunks against the
   original, and (``--check-bodies``, default on) that the rat and MyoLegs compile from
   the slimmed dm-control and myo-sim alone.

Downloads are cached in ``--download-dir`` (default /tmp/neuromimic-lease/download);
rebuilding the Warp wheel takes a few minutes of one core (LZMA at its strongest preset).
"""

from __future__ import annotations

import argparse
import base64
import csv
import fnmatch
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20
#: What the device tool carries per call: the working tree plus the carried paths.
CARRY_LIMIT_MIB = 64.0

#: Distributions carried, at these versions (neuromimic's pins where pyproject.toml has
#: them), and what the carried wheels need that the image lacks.
CARRIED: dict[str, str] = {
    "mujoco": "3.17.0",
    "mujoco-mjx": "3.17.0",
    "mujoco-warp": "3.17.0",
    "warp-lang": "1.19.0",
    "torchrl": "0.14.1",
    "tensordict": "0.14.3",
    "dm-control": "1.0.50",  # the rat's rodent.xml (never imported)
    "myo-sim": "0.2.4",  # MyoLegs (myo_sim.load_spec)
    # requirements of the above that the device image does not have
    "glfw": "2.11.0",  # mujoco (imported by its classic GL context)
    "websockets": "17.4",  # mujoco
    "trimesh": "5.2.0",  # mujoco-mjx (imported by mjx's mesh code)
    "pyvers": "0.2.3",  # torchrl, tensordict
    "hoptorch": "0.1.4",  # torchrl
    "orjson": "3.13.0",  # tensordict (python < 3.13)
    # tensordict imports it; 8.7 (not 9+, which needs lazy-importer) needs only zipp
    "importlib-metadata": "8.7.0",
}

#: Carried only for files read by path: their requirements are not needed.
NOT_FOLLOWED: dict[str, str] = {
    "dm-control": "neuromimic reads rodent.xml from its folder and never imports dm_control",
}

#: Requirements deliberately not carried, with the reason.
NOT_CARRIED: dict[str, str] = {
    "pyopengl": "imported only by MuJoCo's EGL and OSMesa rendering; the lease does not render",
}

#: The device image's Python packages (the device tool's KINDS.md, 'Python packages
#: already there', read on 2026-11-17). Versions seen there: torch 2.11.0, jax 0.11.2,
#: numpy 2.5.2, lightning 2.6.6 (pytorch-lightning), Python 3.12.3.
_IMAGE_LIST = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml
markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda
numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip
pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo
pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov
pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex
requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
"""
IMAGE_PACKAGES = frozenset(_IMAGE_LIST.split())

#: The files of the rat (dm-control 1.0.50) and MyoLegs (myo-sim 0.2.4) that MuJoCo opens
#: when neuromimic builds them (traced with strace; `--check-bodies` re-checks).
RODENT_FILES = (
    "dm_control/__init__.py",
    "dm_control/locomotion/walkers/assets/rodent.xml",
    "dm_control/locomotion/walkers/assets/rodent_walker_skin.skn",
)
MYOLEGS_ASSETS = tuple(
    f"myo_sim/models/meshes/{name}.stl"
    for name in (
        ["hat_cervical", "hat_jaw", "hat_skull", "sacrum", "thorax"]
        + [f"lumbar{i}" for i in range(1, 6)]
        + [
            f"{side}_{bone}"
            for side in "lr"
            for bone in ("bofoot", "femur", "fibula", "foot", "patella", "pelvis", "talus", "tibia")
        ]
        + [f"thoracic{i}_s" for i in range(1, 13)]
    )
) + tuple(
    f"myo_sim/models/scene/{name}"
    for name in (
        "floor0.png",
        "myosuite_logo.msh",
        "myosuite_logo.png",
        "myosuite_scene.png",
        "myosuite_scene_noFloor.msh",
    )
)
#: Asset suffixes the myo-sim slimming drops unless listed in `MYOLEGS_ASSETS`.
BINARY_ASSETS = (".stl", ".msh", ".obj", ".png", ".skn")

#: How each wheel is slimmed: ``drop`` patterns (fnmatch on the path in the wheel, a
#: trailing ``/`` drops a folder), or ``keep`` (only these files, plus the metadata), or
#: a function; ``lzma``: members stored with LZMA at its strongest preset.
SLIM: dict[str, dict] = {
    "mujoco": {
        "drop": [
            "mujoco/experimental/",
            "mujoco/_render_filament.*",
            "mujoco/mjrf.py",
            "mujoco/rendering/filament/",
            "mujoco/testdata/",
            "*_test.py",
        ]
    },
    "mujoco-mjx": {"drop": ["mujoco/mjx/test_data/", "mujoco/mjx/integration_test/", "*_test.py"]},
    "mujoco-warp": {"drop": ["mujoco_warp/test_data/", "*_test.py"]},
    "warp-lang": {"drop": ["warp/bin/warp-clang.so", "warp/examples/", "warp/tests/"], "lzma": ["warp/bin/warp.so"]},
    "torchrl": {"drop": ["sota-implementations/", "sota-check/", "benchmarks/"]},
    "dm-control": {"keep": list(RODENT_FILES)},
    "myo-sim": {"assets": list(MYOLEGS_ASSETS)},
}

PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + [
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "manylinux_2_5_x86_64",
]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_distribution(path: Path) -> str:
    return canonical(path.name.split("-")[0])


def download(download_dir: Path) -> dict[str, Path]:
    """``pip download`` every `CARRIED` wheel for CPython 3.12 on x86-64 Linux; cached."""
    download_dir.mkdir(parents=True, exist_ok=True)

    def found() -> dict[str, Path]:
        have = {}
        for path in download_dir.glob("*.whl"):
            version = path.name.split("-")[1]
            name = wheel_distribution(path)
            if CARRIED.get(name) == version:
                have[name] = path
        return have

    missing = [f"{name}=={version}" for name, version in CARRIED.items() if name not in found()]
    if missing:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            "--abi",
            "cp312",
            "--abi",
            "abi3",
            "--abi",
            "none",
            *[arg for p in PLATFORMS for arg in ("--platform", p)],
            "-d",
            str(download_dir),
            *missing,
        ]
        print("downloading:", " ".join(missing), flush=True)
        subprocess.run(command, check=True)
    have = found()
    lost = sorted(set(CARRIED) - set(have))
    if lost:
        raise SystemExit(f"pip download did not bring {lost} into {download_dir}")
    return have


def metadata(path: Path) -> str:
    with zipfile.ZipFile(path) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return wheel.read(name).decode()


def check_requirements(wheels: dict[str, Path]) -> list[str]:
    """Every requirement of every carried wheel (for Python 3.12 on Linux x86-64, no
    extras) that is neither carried at a matching version nor in the image, nor waived."""
    from packaging.requirements import Requirement

    environment = {
        "python_version": "3.12",
        "python_full_version": "3.12.3",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    problems = []
    for name, path in sorted(wheels.items()):
        if name in NOT_FOLLOWED:
            continue
        for line in metadata(path).splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            needed = canonical(requirement.name)
            if needed in CARRIED:
                if not requirement.specifier.contains(CARRIED[needed], prereleases=True):
                    problems.append(f"{name} needs {requirement}; {needed} {CARRIED[needed]} is carried")
            elif needed not in IMAGE_PACKAGES and needed not in NOT_CARRIED:
                problems.append(f"{name} needs {requirement}, which the device image lacks: add it to CARRIED")
    return problems


class _StrongLZMA(zipfile.LZMACompressor):
    """zipfile's LZMA member compressor at preset 9e (64 MiB dictionary) instead of 6; the
    properties travel in the member's header, so any zipfile (pip's) decompresses it."""

    def _init(self):
        props = lzma._encode_filter_properties({"id": lzma.FILTER_LZMA1, "preset": 9 | lzma.PRESET_EXTREME})
        self._comp = lzma.LZMACompressor(
            lzma.FORMAT_RAW, filters=[lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)]
        )
        return struct.pack("<BBH", 9, 4, len(props)) + props


def _kept(path: str, rule: dict) -> bool:
    if ".dist-info/" in path:
        return True
    if "keep" in rule:
        return path in rule["keep"]
    if "assets" in rule and path.lower().endswith(BINARY_ASSETS):
        return path in rule["assets"]
    for pattern in rule.get("drop", []):
        if pattern.endswith("/") and path.startswith(pattern):
            return False
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern):
            return False
    return True


def slim(source: Path, rule: dict, out_dir: Path) -> Path:
    """``source`` rebuilt without the files ``rule`` drops; same name, RECORD rewritten."""
    target = out_dir / source.name
    stamp = out_dir / f".{source.name}.source"
    signature = f"{sha256_file(source)} {json.dumps(rule, sort_keys=True)} v2"
    if target.exists() and stamp.exists() and stamp.read_text() == signature:
        return target
    with zipfile.ZipFile(source) as wheel:
        record_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/RECORD"))
        kept = [info for info in wheel.infolist() if _kept(info.filename, rule) and not info.is_dir()]
        kept_names = {info.filename for info in kept}
        rows = list(csv.reader(io.StringIO(wheel.read(record_name).decode())))
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows(row for row in rows if row and row[0] in kept_names)
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w") as out:
            for info in kept:
                data = record.getvalue().encode() if info.filename == record_name else wheel.read(info)
                copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                copy.external_attr = info.external_attr
                if info.filename in rule.get("lzma", []):
                    print(
                        f"  {source.name}: LZMA 9e of {info.filename} ({len(data) / MIB:.0f} MiB), minutes...",
                        flush=True,
                    )
                    copy.compress_type = zipfile.ZIP_LZMA
                    previous, zipfile.LZMACompressor = zipfile.LZMACompressor, _StrongLZMA
                    try:
                        out.writestr(copy, data)
                    finally:
                        zipfile.LZMACompressor = previous
                else:
                    copy.compress_type = zipfile.ZIP_DEFLATED
                    out.writestr(copy, data, compresslevel=9)
    partial.replace(target)
    stamp.write_text(signature)
    return target


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_record(path: Path) -> None:
    """Every file of wheel ``path`` is in its RECORD with the right hash and size, and
    every RECORD entry is in the wheel (what pip's installer relies on)."""
    with zipfile.ZipFile(path) as wheel:
        record_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/RECORD"))
        rows = {row[0]: row for row in csv.reader(io.StringIO(wheel.read(record_name).decode())) if row}
        names = {n for n in wheel.namelist() if not n.endswith("/")}
        if set(rows) != names:
            raise SystemExit(f"{path.name}: RECORD and contents differ: {sorted(set(rows) ^ names)[:10]}")
        for name in names - {record_name}:
            algorithm, expected = rows[name][1].split("=", 1)
            data = wheel.read(name)
            actual = base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).rstrip(b"=").decode()
            if actual != expected or int(rows[name][2]) != len(data):
                raise SystemExit(f"{path.name}: {name} does not match its RECORD entry")


def tree_bytes() -> int:
    """Bytes of the working tree the device tool sends (tracked and untracked, not ignored)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, check=True
        ).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return 0
    total = 0
    for name in filter(None, listed):
        path = REPO / os.fsdecode(name)
        if path.is_file():
            total += path.stat().st_size
    return total


def split_parts(wheels: list[Path], warp: Path, part2_only: list[Path], out: Path, budget: int) -> list[dict]:
    """Write ``out/lease1`` and ``out/lease2``: part 1 = ``wheels`` + Warp's first chunk,
    part 2 = the rest of Warp + ``part2_only``, chunked so the two parts are about equal."""
    base1 = sum(p.stat().st_size for p in wheels)
    base2 = sum(p.stat().st_size for p in part2_only)
    size = warp.stat().st_size
    first = min(size, max(0, (base2 + size - base1) // 2))
    sizes = [base1 + first, base2 + size - first]
    if max(sizes) > budget:
        raise SystemExit(
            f"the carry set does not fit: parts of {sizes[0] / MIB:.1f} and {sizes[1] / MIB:.1f} MiB, "
            f"{budget / MIB:.1f} MiB allowed each (64 MiB less the working tree and the margin)"
        )
    whole = sha256_file(warp)
    data = warp.read_bytes()
    chunks = [data[:first], data[first:]]
    manifests = []
    for index, (members, chunk) in enumerate(zip((wheels, part2_only), chunks, strict=True), start=1):
        folder = out / f"lease{index}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for path in members:
            shutil.copy2(path, folder / path.name)
        chunk_name = f"{warp.name}.chunk{index}of2"
        (folder / chunk_name).write_bytes(chunk)
        manifest = {
            "part": index,
            "wheels": sorted(p.name for p in members),
            "chunks": [
                {
                    "file": chunk_name,
                    "of": warp.name,
                    "index": index,
                    "count": 2,
                    "bytes": len(chunk),
                    "sha256": hashlib.sha256(chunk).hexdigest(),
                }
            ],
            "assembled": {warp.name: {"bytes": size, "sha256": whole, "chunks": 2}},
            "bytes": sum(p.stat().st_size for p in folder.iterdir()),
        }
        (folder / "lease.json").write_text(json.dumps(manifest, indent=1) + "\n")
        manifests.append(manifest)
    joined = b"".join((out / f"lease{i}" / f"{warp.name}.chunk{i}of2").read_bytes() for i in (1, 2))
    if hashlib.sha256(joined).hexdigest() != whole:
        raise SystemExit("the joined chunks differ from the Warp wheel")
    return manifests


def check_bodies(slim_dir: Path, wheels: dict[str, Path]) -> None:
    """The rat and MyoLegs compile with only the slimmed dm-control and myo-sim on the path
    (pure-Python wheels: this interpreter's mujoco does the compiling)."""
    with tempfile.TemporaryDirectory(prefix="lease-bodies-") as target:
        for name in ("dm-control", "myo-sim"):
            with zipfile.ZipFile(wheels[name]) as wheel:
                wheel.extractall(target)
        code = (
            "import dm_control, myo_sim\n"
            f"assert dm_control.__file__.startswith({target!r}), dm_control.__file__\n"
            f"assert myo_sim.__file__.startswith({target!r}), myo_sim.__file__\n"
            "from neuromimic.bodies import get_body\n"
            "from neuromimic.physics.model import compile_model\n"
            "for key in ('rodent', 'myolegs'):\n"
            "    model = compile_model(get_body(key))\n"
            "    print(key, 'nq', model.nq, 'nu', model.nu, 'nmesh', model.nmesh)\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([target, str(REPO), os.environ.get("PYTHONPATH", "")])}
        subprocess.run([sys.executable, "-c", code], check=True, env=env)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--download-dir", type=Path, default=Path("/tmp/neuromimic-lease/download"))
    parser.add_argument("--slim-dir", type=Path, default=Path("/tmp/neuromimic-lease/slim"))
    parser.add_argument("--out", type=Path, default=REPO / ".whl", help="folder of lease1/ and lease2/ (ignored)")
    parser.add_argument(
        "--margin-mib", type=float, default=4.0, help="room left in each call for the working tree to grow (default 4)"
    )
    parser.add_argument("--no-check-bodies", dest="check_bodies", action="store_false")
    parser.add_argument("--list", action="store_true", help="print what is carried and why, then stop")
    args = parser.parse_args(argv)

    if args.list:
        print(
            json.dumps(
                {
                    "carried": CARRIED,
                    "slimmed": SLIM,
                    "not_carried": NOT_CARRIED,
                    "requirements_not_followed": NOT_FOLLOWED,
                },
                indent=1,
            )
        )
        return
    downloaded = download(args.download_dir)
    problems = check_requirements(downloaded)
    if problems:
        raise SystemExit("requirements not covered:\n  " + "\n  ".join(problems))
    args.slim_dir.mkdir(parents=True, exist_ok=True)
    ready = {}
    for name, path in sorted(downloaded.items()):
        ready[name] = slim(path, SLIM[name], args.slim_dir) if name in SLIM else path
        verify_record(ready[name])
    if args.check_bodies:
        check_bodies(args.slim_dir, ready)
    tree = tree_bytes()
    budget = int(CARRY_LIMIT_MIB * MIB) - tree - int(args.margin_mib * MIB)
    warp = ready.pop("warp-lang")
    part2 = [ready.pop("mujoco-warp")]
    manifests = split_parts(sorted(ready.values()), warp, part2, args.out, budget)
    rows = [
        (name, downloaded[name].stat().st_size, path.stat().st_size)
        for name, path in sorted({**ready, "warp-lang": warp, "mujoco-warp": part2[0]}.items())
    ]
    print(f"{'distribution':22s} {'wheel MiB':>10s} {'carried MiB':>12s}")
    for name, before, after in rows:
        print(f"{name:22s} {before / MIB:10.2f} {after / MIB:12.2f}")
    for manifest in manifests:
        folder = args.out / f"lease{manifest['part']}"
        print(
            f"{folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder}: "
            f"{manifest['bytes'] / MIB:.2f} MiB; with the working tree ({tree / MIB:.2f} MiB): "
            f"{(manifest['bytes'] + tree) / MIB:.2f} of {CARRY_LIMIT_MIB:.0f} MiB"
        )


if __name__ == "__main__":
    main()
