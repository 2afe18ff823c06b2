"""Which module may import which (docs/architecture.md), read from the source's AST.

The host package is drawn in layers; a module imports only modules of its own layer
or below, the faces only the public core, and nothing forms an import cycle. Only
``docker.py`` starts processes. The executor imports nothing but the standard
library and itself, in Python 3.9 syntax. Imports under ``if TYPE_CHECKING:`` are
annotations, not dependencies, and are not counted; imports inside functions are.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "codeexec"
EXECUTOR = ROOT / "executor_image" / "codeexec_executor"

# Lowest first. "codeexec" is the package's __init__ (the public namespace).
LAYERS: dict[str, tuple[str, ...]] = {
    "foundation": ("errors", "_shared", "_urls"),
    "values": ("_checks", "models", "_checkpoint", "_results", "_events"),
    "pure": (
        "protocol",
        "_dockererrors",
        "_dockerargs",
        "_buildargs",
        "_engineargs",
        "_bounds",
        "_snapargs",
        "_cells",
    ),
    "seams": (
        "docker",
        "_dockerverbs",
        "_engineverbs",
        "_background",
        "_transport",
        "_connection",
        "_fileclient",
        "client",
        "images",
        "_imagereuse",
        "_hostindex",
        "_addrcache",
        "_fds",
        "_snapverbs",
        "_locality",
        "_engineapi",
    ),
    "core": (
        "options",
        "engines",
        "_channel",
        "_launcher",
        "pool",
        "_start",
        "_executing",
        "_forking",
        "_checkpointing",
        "_transfer",
        "_filetree",
        "_commands",
        "session",
        "_async_files",
        "async_session",
        "_doctor",
        "maintenance",
        "baseimage",
        "scope",
        "registry",
        "_snapstore",
        "snapshot",
    ),
    "namespace": ("codeexec",),
    "faces": (
        "__main__",
        "cli",
        "mcp_server",
        # codeexec/integrations/: adapters for agent frameworks (optional extras)
        "integrations",
        "integrations.autogen",
        "integrations.smolagents",
        "integrations.langchain",
    ),
}
FACE_PREFIXES = ("_cli_", "_mcp_", "mcp_")
# What a face may import besides other face modules: the public core.
PUBLIC_CORE = {
    "codeexec",
    "errors",
    "models",
    "options",
    "session",
    "async_session",
    "pool",
    "maintenance",
    "baseimage",
    "images",
    "scope",
    "registry",
    "snapshot",
}
PUBLIC_CORE.add("_checkpoint")  # Checkpoint, a public value the faces format
PUBLIC_CORE.add("_bounds")  # the result caps a face applies (MCP_LIMITS), and bounded logs
# Pure modules compute; they open no process, socket, thread or file of their own.
PURE = {
    "_snapargs",
    "errors",
    "_shared",
    "_urls",
    "models",
    "_checkpoint",
    "protocol",
    "_dockerargs",
    "_buildargs",
    "_bounds",
}
PURE |= {"_events", "_cells", "_checks", "_dockererrors", "_engineargs"}
IMPURE_STDLIB = {"subprocess", "socket", "selectors", "threading", "multiprocessing", "asyncio"}
IMPURE_STDLIB |= {"signal", "shutil", "tempfile", "pty"}
PURE_MAY_IMPORT = {"protocol": {"models", "_events", "errors", "_shared"}}

# Edges that break the rules today and are being removed by another helper of
# issue 11. Each must still exist (so a stale entry fails too): delete it on merge.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    module: str  # "codeexec.x" / "x" relative to its package, or an absolute name
    internal: bool
    line: int


def _imports(path: Path, package: str, subpackage: str = "") -> list[Import]:
    """Every import in ``path`` outside ``if TYPE_CHECKING:`` blocks.

    In a ``subpackage`` of the package, ``from .x import`` names ``subpackage.x``.
    """
    modules = {p.stem for p in path.parent.glob("*.py")}
    found: list[Import] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for stmt in child.orelse:
                    visit_one(stmt)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                internal = alias.name.split(".")[0] == package
                name = alias.name.split(".")[1] if internal and "." in alias.name else alias.name
                found.append(Import(name if internal else alias.name, internal, node.lineno))
        elif isinstance(node, ast.ImportFrom) and subpackage and node.level == 1:
            own = f"{subpackage}.{node.module}" if node.module else subpackage
            found.append(Import(own, True, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            absolute_internal = node.level == 0 and (node.module or "").split(".")[0] == package
            if node.level == 0 and not absolute_internal:
                found.append(Import(node.module or "", False, node.lineno))
                return
            parts = (node.module or "").split(".")
            target = parts[1] if absolute_internal and len(parts) > 1 else parts[0]
            if not target or (absolute_internal and len(parts) == 1):
                # `from . import x`: module x if it is one, else a name of the package.
                for alias in node.names:
                    name = alias.name if alias.name in modules else package
                    found.append(Import(name, True, node.lineno))
            else:
                found.append(Import(target, True, node.lineno))
        else:
            visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def _host_modules() -> dict[str, list[Import]]:
    graph = {}
    for path in sorted(PACKAGE.glob("*.py")):
        name = "codeexec" if path.stem == "__init__" else path.stem
        graph[name] = _imports(path, "codeexec")
    for path in sorted(PACKAGE.glob("*/*.py")):  # subpackages: "integrations.autogen"
        sub = path.parent.name
        name = sub if path.stem == "__init__" else f"{sub}.{path.stem}"
        graph[name] = _imports(path, "codeexec", sub)
    return graph


def _layer_of(module: str) -> int:
    for rank, members in enumerate(LAYERS.values()):
        if module in members:
            return rank
    if module.startswith(FACE_PREFIXES):
        return len(LAYERS) - 1
    raise AssertionError(
        f"codeexec/{module}.py is in no layer: add it to LAYERS in tests/test_layering.py "
        "and to the drawing in docs/architecture.md"
    )


def _is_face(module: str) -> bool:
    return _layer_of(module) == len(LAYERS) - 1


def _internal_edges(graph: dict[str, list[Import]]) -> set[tuple[str, str]]:
    return {(a, i.module) for a, imps in graph.items() for i in imps if i.internal if i.module != a}


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Each strongly connected component with more than one module (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _allowed(edge: tuple[str, str], kind: str) -> bool:
    return KNOWN_EXCEPTIONS.get(edge) == kind


# -- the host package ------------------------------------------------------------------


def test_every_module_sits_in_a_layer_and_imports_only_its_layer_or_below() -> None:
    graph = _host_modules()
    upward = [
        f"{a} ({list(LAYERS)[min(_layer_of(a), len(LAYERS) - 1)]}) imports {b}"
        for a, b in sorted(_internal_edges(graph))
        if _layer_of(b) > _layer_of(a)
    ]
    assert upward == []


def test_faces_import_only_the_public_core_and_their_own_helpers() -> None:
    graph = _host_modules()
    wrong = [
        f"{a} imports {b}"
        for a, b in sorted(_internal_edges(graph))
        if _is_face(a) and not _is_face(b) and b not in PUBLIC_CORE
        if not _allowed((a, b), "face")
    ]
    assert wrong == []


def test_the_core_never_imports_a_face() -> None:
    graph = _host_modules()
    assert [(a, b) for a, b in _internal_edges(graph) if not _is_face(a) and _is_face(b)] == []


def test_no_import_cycles_in_the_package() -> None:
    edges = {e for e in _internal_edges(_host_modules()) if not _allowed(e, "cycle")}
    assert _cycles(edges) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    # The check itself, on a made-up graph: a -> b -> c -> a, and d alone.
    assert _cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]


def test_protocol_imports_only_models_errors_and_the_shared_constants() -> None:
    graph = _host_modules()
    assert {i.module for i in graph["protocol"] if i.internal} <= PURE_MAY_IMPORT["protocol"]


def test_pure_modules_do_no_io_and_import_only_pure_modules() -> None:
    graph = _host_modules()
    wrong = [
        f"{name} imports {i.module} (line {i.line})"
        for name in sorted(PURE)
        for i in graph[name]
        if (i.internal and i.module not in PURE)
        or (not i.internal and i.module.split(".")[0] in IMPURE_STDLIB)
    ]
    assert wrong == []


def test_only_docker_module_runs_processes() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "docker.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Attribute):
                names = [f"{ast.unparse(node.value)}.{node.attr}"]
            for name in names:
                if name.split(".")[0] in ("subprocess", "pty", "multiprocessing") or (
                    name.startswith(("os.system", "os.popen", "os.spawn", "os.exec", "os.fork"))
                    or name.startswith(("os.posix_spawn", "asyncio.create_subprocess"))
                    or name.startswith(("anyio.run_process", "anyio.open_process"))
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert offenders == []


def test_only_docker_and_its_verbs_speak_the_engine_api() -> None:
    # The engine API is the docker CLI's stand-in on hot paths: like the CLI, only
    # docker.py and its verb mixins may use it (codeexec/_engineapi.py).
    graph = _host_modules()
    users = sorted(a for a, imps in graph.items() for i in imps if i.module == "_engineapi")
    assert users == ["_dockerverbs", "_engineverbs", "docker"]


def test_the_host_reads_the_executor_only_through_shared() -> None:
    # _shared.py executes the executor's constants.py; no module imports the executor.
    graph = _host_modules()
    users = sorted(a for a, imps in graph.items() for i in imps if "codeexec_executor" in i.module)
    assert users == []


def test_known_exceptions_are_still_needed() -> None:
    # Once another helper's change removes an edge, its exception must go too.
    edges = _internal_edges(_host_modules())
    assert sorted(e for e in KNOWN_EXCEPTIONS if e not in edges) == []
    cyclic = {e for e, kind in KNOWN_EXCEPTIONS.items() if kind == "cycle"}
    assert all(_cycles(edges - (cyclic - {e})) for e in cyclic)


# -- the executor ------------------------------------------------------------------------


def _executor_modules() -> dict[str, list[Import]]:
    return {p.stem: _imports(p, "codeexec_executor") for p in sorted(EXECUTOR.glob("*.py"))}


def test_the_executor_imports_only_the_standard_library_and_itself() -> None:
    wrong = [
        f"{name}.py:{i.line} imports {i.module}"
        for name, imps in _executor_modules().items()
        for i in imps
        if not i.internal and i.module.split(".")[0] not in sys.stdlib_module_names
    ]
    assert wrong == []
    assert all(i.module != "codeexec" for imps in _executor_modules().values() for i in imps)


def test_the_executor_has_no_import_cycles() -> None:
    edges = {
        (a, i.module if i.module != "codeexec_executor" else "__init__")
        for a, imps in _executor_modules().items()
        for i in imps
        if i.internal and i.module != a
    }
    # __main__ imports itself by its absolute name when run by path (see its docstring).
    assert _cycles({(a, b) for a, b in edges if a != b}) == []


def test_the_executor_is_python_3_9_syntax() -> None:
    for path in sorted(EXECUTOR.glob("*.py")):
        ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 9))
