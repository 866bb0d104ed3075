"""The package's shape: imports run one way, the runtime never reaches into training, modules stay small.

    cli → codec (façade: api, pillow_plugin) → stages → entropy / coder / container → transforms
    codec.training (the training wing) may use the runtime; the runtime never imports it.

Read from the source with ``ast`` (imports inside functions count too), so a lazy import
cannot hide a circle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import codec

from .conftest import ROOT

PACKAGE = ROOT / "codec"
# Lower rank = lower layer: a runtime module may import its own rank or lower, never higher.
RANKS = {
    "codec": 4, "codec.api": 4, "codec.pillow_plugin": 4, "codec.batch": 4, "codec.ray_batch": 4, "codec.workers": 4,
    "codec.prior": 3, "codec.lic_file": 3, "codec.latent_coding": 3, "codec.tiled": 3, "codec.refine": 3,
    "codec.inputs": 3, "codec.images": 3, "codec.backends": 3, "codec.torch_backend": 3,
    "codec.probability": 2, "codec.weights": 2, "codec.frozen": 2, "codec.latents": 2, "codec.metrics": 2,
    "codec.entropy": 1, "codec.densities": 1, "codec.coder": 1, "codec.container": 1, "codec.exact": 1, "codec.exact_context": 1,
    "codec.exact_matmul": 1,
    "codec.tiling": 1, "codec.efforts": 1, "codec.onnx_runtime": 1, "codec.openvino_runtime": 1,
    "codec.shipped": 1, "codec.files": 1,
    "codec.transforms": 0, "codec.context": 0, "codec.errors": 0, "codec.config": 0,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str] = frozenset()) -> set[str]:
    """Every module ``path`` imports, anywhere in it, relative imports resolved (``from . import x``:
    the submodule x where ``modules`` has it, else the package)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            subs = {f"{base}.{alias.name}" for alias in node.names}
            found.update(subs & modules)
            if not subs <= modules:
                found.add(base)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path, set(modules)) if m in modules and m != name}
            for name, path in modules.items()}


def test_runtime_modules_are_all_ranked():
    runtime = {m for m in _graph() if not m.startswith("codec.training")}
    assert runtime == set(RANKS), "a new runtime module needs its layer in RANKS"


def test_imports_run_one_way():
    for module, deps in _graph().items():
        if module.startswith("codec.training"):
            continue
        for dep in deps:
            assert not dep.startswith("codec.training"), f"runtime {module} imports the training wing ({dep})"
            assert RANKS[dep] <= RANKS[module], f"{module} (layer {RANKS[module]}) imports {dep} (layer {RANKS[dep]})"


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                pytest.fail("import circle: " + " → ".join(path[path.index(dep):] + [dep]) if dep in path
                            else f"import circle through {dep}")
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_runtime_never_imports_compressai():
    for path in PACKAGE.rglob("*.py"):
        if "training" not in path.relative_to(PACKAGE).parts:
            assert not any(m.split(".")[0] == "compressai" for m in _imports(path)), path


@pytest.mark.parametrize("folder", ["cli", "benchmarks"])
def test_cli_and_benchmarks_use_public_names_only(folder):
    for path in (ROOT / folder).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("codec"):
                names = [a.name for a in node.names]
                assert not any(n.startswith("_") for n in names), f"{path.name}: {node.module} {names}"
                assert node.module != "codec.api", f"{path.name}: use the names codec exports, not codec.api's"
                if node.module == "codec":  # exported names, or the public stage modules
                    public = set(codec.__all__) | {m.split(".")[1] for m in RANKS if "." in m}
                    assert set(names) <= public, f"{path.name}: {names} not exported by codec"
                if folder == "cli":
                    assert node.module in ("codec", "codec.training"), f"{path.name}: {node.module}"


def test_modules_stay_small():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    sizes.update({p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in (ROOT / "cli").glob("*.py")})
    assert sizes["codec/api.py"] < 250
    assert {p: n for p, n in sizes.items() if n > 400} == {}
