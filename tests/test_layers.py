"""The import rule: no lower package imports an upper one (module-level and lazy imports inside functions alike).

The layers, lowest first (docs/architecture.md explains them). A package may import its own modules and those of
any package on its floor or below. ``mv3dad/errors.py`` and ``mv3dad/config.py`` count as packages of their own.
"""

import ast
from pathlib import Path

import mv3dad

LAYERS: list[set[str]] = [
    {"errors"},
    {"io"},
    {"config"},
    {"geometry"},
    {"data"},
    {"synth"},
    {"encoders"},
    {"mapping"},
    {"scoring"},
    {"volume"},
    {"metrics", "export"},
    {"viz", "pretrain"},
    {"pipeline"},
    {"cli"},
    {"__init__", "__main__"},
]
RANK = {pkg: i for i, floor in enumerate(LAYERS) for pkg in floor}

# (importing module, imported module) pairs left as they are, each with the reason. Remove an entry once fixed.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}  # (importer, imported) -> why; none today

ROOT = Path(mv3dad.__file__).parent


def _module_name(path: Path, root: Path = ROOT) -> tuple[str, ...]:
    parts = path.relative_to(root).with_suffix("").parts
    return ("mv3dad", *parts)


def _imports(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """(absolute module name, line) of every mv3dad import in ``path``, at any depth (functions included)."""
    package = _module_name(path, root)[:-1]  # the package holding the module (an __init__'s own package)
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join((*base, node.module) if node.module else base)
            else:
                name = node.module or ""
            out.append((name, node.lineno))
            out += [(f"{name}.{a.name}", node.lineno) for a in node.names if name == "mv3dad"]
    return [(n, line) for n, line in out if n == "mv3dad" or n.startswith("mv3dad.")]


def _package(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


def _floor(pkg: str) -> int:
    assert pkg in RANK, f"package {pkg!r} is not in LAYERS of tests/test_layers.py: place it on a floor"
    return RANK[pkg]


def test_every_package_has_a_floor():
    for p in ROOT.iterdir():
        if (p.is_dir() and (p / "__init__.py").is_file()) or p.suffix == ".py":
            _floor(p.stem if p.suffix == ".py" else p.name)


def test_no_lower_package_imports_an_upper_one():
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        mod = _module_name(path)
        src = mod[1] if len(mod) > 1 else "__init__"
        src_name = ".".join(mod).removesuffix(".__init__")
        for target, line in _imports(path):
            dst = _package(target)
            if dst is None or dst == src or (src_name, target) in KNOWN_EXCEPTIONS:
                continue
            if _floor(dst) > _floor(src):
                violations.append(f"{path.relative_to(ROOT.parent)}:{line}: {src} imports {target} (upper floor)")
    assert not violations, "\n".join(violations)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "mv3dad" / "data"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("def f():\n    from mv3dad.pipeline.fit import run_fit\n\nfrom ..scoring import y\nfrom . import z\n")
    found = sorted(n for n, _ in _imports(f, tmp_path / "mv3dad"))
    assert found == ["mv3dad.data", "mv3dad.pipeline.fit", "mv3dad.scoring"]
