"""Package structure: the search/latency/space layers import without torch, the internal
module-level import graph has no cycles, and only the CLI imports the CLI."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "donna_nas"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(body, module_level: bool):
    """Import statements of ``body``: at module level (into module-level if/try/with blocks,
    skipping ``if TYPE_CHECKING:``), or everywhere when ``module_level`` is false."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            continue
        elif module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            child = getattr(node, field, None)
            if isinstance(child, list):
                yield from _import_nodes(child, module_level)


def _targets(module: str, node) -> set[str]:
    """The donna_nas modules an import statement of ``module`` loads (most specific name)."""
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = module.split(".")
            is_pkg = MODULES[module].name == "__init__.py"
            pkg = pkg if is_pkg else pkg[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        for a in node.names:
            sub = f"{base}.{a.name}"
            names.append(sub if sub in MODULES else base)
    out = set()
    for n in names:
        while n and n not in MODULES:  # `import donna_nas.x.y` of a non-module attribute
            n = n.rpartition(".")[0]
        if n.startswith("donna_nas") and n != module:
            out.add(n)
    return out


def import_graph(module_level: bool = True) -> dict[str, set[str]]:
    graph = {}
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[mod] = set().union(*(_targets(mod, n) for n in _import_nodes(tree.body, module_level)))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = GREY
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if color.get(m) == GREY:
                return stack[stack.index(m):] + [m]
            if color.get(m) == WHITE:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        color[n] = BLACK
        return None

    for n in sorted(graph):
        if color[n] == WHITE:
            found = visit(n)
            if found:
                return found
    return None


def test_graph_checker_finds_cycles_and_resolves_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    g = import_graph()
    # a from-import of a submodule is an edge to that submodule; of a name, to its module
    assert "donna_nas.space.ops" in g["donna_nas.space.space"]
    assert "donna_nas.latency.base" in g["donna_nas.latency.table"]
    # TYPE_CHECKING-only and function-level imports are not module-level edges
    assert "donna_nas.nn.builder" not in g["donna_nas.space.space"]
    assert "donna_nas.space.space" not in g["donna_nas.space.ops"]


def test_module_level_import_graph_has_no_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _is_cli(mod: str) -> bool:
    return mod == "donna_nas.cli" or mod.startswith("donna_nas.cli.") or mod == "donna_nas.__main__"


def test_full_import_graph_outside_the_cli_has_no_cycles():
    """Function-level (lazy) imports too: layers only import downwards. Edges inside the CLI
    package (``_register`` loads the command modules, which use its console) are left out."""
    g = {m: {d for d in deps if not (_is_cli(m) and _is_cli(d))}
         for m, deps in import_graph(module_level=False).items()}
    cycle = find_cycle(g)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_only_the_cli_imports_the_cli():
    offenders = sorted(
        mod for mod, deps in import_graph(module_level=False).items()
        if not _is_cli(mod) and any(_is_cli(d) for d in deps))
    assert offenders == [], f"library modules import donna_nas.cli: {offenders}"


TORCH_FREE = textwrap.dedent("""
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, NoTorch())
    sys.modules.pop("torch", None)
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the torch block does not work")

    import donna_nas, donna_nas.space, donna_nas.search, donna_nas.latency, donna_nas.latency.table
    from donna_nas import LookupTable, load_space, search
    from donna_nas.latency import shipped_tables_dir
    from donna_nas.search import SyntheticLatency, synthetic_predictor

    space = load_space("tiny")
    arch = space.sample(0)
    assert space.params(arch) > 0 and space.ops(arch)[0].key.startswith("stem:")
    res = search(space, synthetic_predictor(space, 0), SyntheticLatency(), method="exact")
    assert res.front
    ofa = load_space("ofa_mbv3_w12")
    table = LookupTable.from_csv(shipped_tables_dir() / "note10_ofa_mbv3_w12.csv")
    assert table.arch_latency(ofa, ofa.sample(0)) > 0
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules if sys.modules[m] is not None)
    print("torch-free ok")
""")


def test_space_search_and_latency_import_without_torch():
    r = subprocess.run([sys.executable, "-c", TORCH_FREE], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "torch-free ok" in r.stdout


def test_the_torch_block_is_effective():
    """The check above would pass vacuously if blocking failed: a torch-needing module must fail."""
    code = TORCH_FREE.split("import donna_nas, ")[0] + "import donna_nas.nn.ops\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode != 0 and "blocked in this test" in r.stderr


if __name__ == "__main__":  # pragma: no cover - a quick look at the graph
    pytest.main([__file__, "-q"])


def test_top_level_exports_are_lazy():
    code = textwrap.dedent("""
        import sys
        import donna_nas
        assert "torch" not in sys.modules and "optuna" not in sys.modules, "import donna_nas is heavy"
        import donna_nas.search as pkg
        from donna_nas import LookupTable, build_supernet, search
        from donna_nas.distill.pipeline import build_supernet as b
        from donna_nas.latency.table import LookupTable as t
        assert search is pkg and callable(search) and build_supernet is b and LookupTable is t
        print("lazy ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "lazy ok" in r.stdout, r.stdout + r.stderr


def test_cli_help_and_space_commands_run_without_torch():
    """`donna-nas --help` and `space show` need no tensor: they run with torch unimportable, and the
    default thread count waits in OMP_NUM_THREADS for a command that does import torch."""
    code = TORCH_FREE.split("import donna_nas, ")[0] + textwrap.dedent("""
        import os
        os.environ.pop("OMP_NUM_THREADS", None)
        from donna_nas.cli import main
        for argv in (["--help"], ["space", "show", "tiny"]):
            try:
                main(argv)
            except SystemExit as exc:
                assert not exc.code, (argv, exc.code)
        assert os.environ["OMP_NUM_THREADS"] == "1"
        print("cli torch-free ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "cli torch-free ok" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
