"""The package's layers (README, "Architecture"): a module imports only from its own layer
or the layers below it, including imports inside functions."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "neuromimic"

#: Top-level modules and subpackages of neuromimic, lowest layer first.
LAYERS = (
    ("errors", "files", "checkpoint_files", "physics_view", "bundled"),
    ("bodies", "tasks", "proprioception"),
    ("keypoints",),
    ("data", "models", "physics"),
    ("envs",),
    ("training",),
    ("analysis",),
    ("bench", "peer", "cli", "commands", "__init__"),
)
LAYER = {unit: depth for depth, units in enumerate(LAYERS) for unit in units}


def unit_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imported_units(path: Path) -> set[str]:
    units = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "neuromimic" and len(parts) > 1:
                units.add(parts[1])
    return units


def test_every_module_has_a_layer():
    units = {unit_of(path) for path in PACKAGE.rglob("*.py")}
    assert units <= set(LAYER), f"modules without a layer in LAYERS: {sorted(units - set(LAYER))}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = unit_of(path)
        for imported in imported_units(path):
            if LAYER.get(imported, -1) > LAYER[unit]:
                upward.append(f"{path.relative_to(PACKAGE.parent)} imports neuromimic.{imported}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_check_finds_an_upward_import(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from neuromimic.analysis.record import record\n")
    assert imported_units(module) == {"analysis"}
