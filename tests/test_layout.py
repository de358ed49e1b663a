"""The package layout (hf_models/__init__.py): rooms by purpose, read from the sources' import statements.

* the remote-code room ``hf_models/modeling`` is exactly what ``save_pretrained`` copies, and imports only itself,
  torch, transformers and the standard library;
* a lower room never imports a higher one, and no import cycle (not even through an import inside a function)
  exists in hf_models or data_scripts;
* every file of hf_models stays short enough to read;
* model folders saved by the flat layout before the rooms (tests/data/legacy_model) still load and score the same.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel
from transformers.dynamic_module_utils import get_relative_import_files

from hf_models import JointRerankerModel, SumOfMaxModel

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hf_models", "data_scripts")
MODELING = ROOT / "hf_models" / "modeling"
LEGACY = Path(__file__).parent / "data" / "legacy_model"
MAX_LINES = 420
# A module may import rooms of a lower or equal rank (and the top-level helpers, rank 0); modeling imports only
# itself. publishing sits below training because the trainer writes a model card with every save.
RANKS = {
    "modeling": 0,
    "index": 1,
    "linking": 2,
    "publishing": 3,
    "training": 4,
    "analysis": 5,
    "recipes": 6,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _statements(tree: ast.Module):
    """Every import statement, those inside functions included (an import run late is still a dependency)."""
    return (node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom))


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Absolute names this module imports: a package's module when ``from package import module``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _statements(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = package.split(".")
        if node.level:
            base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
        for alias in node.names:
            child = f"{target}.{alias.name}"
            found.add(child if child in known else target)
    return found


def room(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "hf_models" and len(parts) > 2 and parts[1] in RANKS else None


def test_the_modeling_room_is_exactly_the_remote_code_set():
    """``save_pretrained`` copies each configuration / modeling file and its relative imports (transformers'
    ``get_relative_import_files``): together they are the room's files, no more, no fewer."""
    files = {p.name for p in MODELING.glob("*.py")} - {"__init__.py"}
    entry_points = [p for p in MODELING.glob("*.py") if p.name.startswith(("configuration_", "modeling_"))]
    copied = {Path(f).name for p in entry_points for f in get_relative_import_files(p)}
    copied |= {p.name for p in entry_points}
    assert copied == files


def test_the_modeling_room_imports_only_itself_torch_and_transformers():
    """Relative imports of its own files only (a model folder holds them side by side), else torch,
    transformers or the standard library."""
    allowed = set(sys.stdlib_module_names) | {"torch", "transformers"}
    for path in sorted(MODELING.glob("*.py")):
        for node in _statements(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module, f"{path.name}: from {'.' * node.level}{node.module}"
                assert (MODELING / f"{node.module}.py").exists(), f"{path.name}: from .{node.module}"
                continue
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for imported in names:
                assert imported.split(".")[0] in allowed, f"{path.name} imports {imported}"


def test_lower_rooms_never_import_higher_ones():
    known = set(modules())
    for name, path in modules().items():
        source = room(name)
        if source is None:
            continue
        for target in imports(name, path, known):
            if not target.startswith("hf_models."):
                continue
            destination = room(target)
            if source == "modeling":
                assert destination == "modeling", f"{name} imports {target}"
            elif destination is not None:
                assert RANKS[destination] <= RANKS[source], (
                    f"{name} ({source}) imports {target} ({destination})"
                )


def test_no_import_cycles():
    known = modules()
    graph = {name: {t for t in imports(name, path, set(known)) if t in known} for name, path in known.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_every_file_is_short_enough_to_read():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "hf_models").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


# ---------------------------------------------------------------- folders saved by the flat layout still load
def legacy_scores(model, name: str, inputs: dict) -> torch.Tensor:
    tensors = {key: torch.tensor(value) for key, value in inputs.items()}
    with torch.no_grad():
        if name == "joint":
            return model.eval()(
                pair_input_ids=tensors["entity_input_ids"],
                pair_attention_mask=tensors["entity_attention_mask"],
            ).scores
        return model.eval()(**tensors).scores


@pytest.mark.parametrize("name, model_class", [("som", SumOfMaxModel), ("joint", JointRerankerModel)])
def test_a_folder_saved_by_the_flat_layout_still_loads(name, model_class):
    record = json.loads((LEGACY / "expected.json").read_text())
    expected = torch.tensor(record["scores"][name])
    folder = LEGACY / name
    direct = model_class.from_pretrained(folder)
    assert type(direct) is model_class
    torch.testing.assert_close(legacy_scores(direct, name, record["inputs"]), expected, rtol=0, atol=1e-6)
    remote = AutoModel.from_pretrained(folder, trust_remote_code=True)
    assert type(remote).__name__ == model_class.__name__
    torch.testing.assert_close(legacy_scores(remote, name, record["inputs"]), expected, rtol=0, atol=1e-6)
