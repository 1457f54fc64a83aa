"""Size and shape of the package, the figures a redesign is judged by: modules, lines,
functions over 60 lines, import cycles and the depth of the import graph (per module, and
with every sub-package collapsed into one "floor").

    python scripts/code_metrics.py            # this checkout
    python scripts/code_metrics.py OTHER_DIR  # another checkout (e.g. a git worktree)

It reads the source with ``ast`` and runs none of it. Imports inside ``if TYPE_CHECKING:``
are left out (they never run); ``from pkg import module`` counts as an edge to the module,
not to the package's ``__init__``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LONG_FUNCTION = 60


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _type_only(tree: ast.AST) -> set[int]:
    return {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
            and getattr(block.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(block)}


def _targets(node: ast.ImportFrom, package: str, mods: dict[str, Path]) -> list[str]:
    if node.level:
        parts = package.split(".")
        base = parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else [])
        target = ".".join(base)
    else:
        target = node.module or ""
    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
    return subs if len(subs) == len(node.names) else [target, *subs]


def scan(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[tuple[int, str]]]:
    """(import graph, [(length, function)])."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    functions = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        skip = _type_only(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                targets = _targets(node, package, mods)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph, sorted(functions, reverse=True)


def depths(graph: dict[str, set[str]]) -> tuple[dict[str, int], list[list[str]]]:
    """Longest import chain from each node (counted in nodes), and the cycles met."""
    sys.setrecursionlimit(10_000)
    state: dict[str, int] = {}
    depth: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(u: str, stack: list[str]) -> None:
        state[u] = 1
        stack.append(u)
        best = 1
        for v in graph.get(u, ()):
            if state.get(v) == 1:
                cycles.append(stack[stack.index(v):] + [v])
                continue
            if state.get(v) != 2:
                visit(v, stack)
            best = max(best, 1 + depth[v])
        stack.pop()
        state[u] = 2
        depth[u] = best

    for node in list(graph):
        if node not in state:
            visit(node, [])
    return depth, cycles


def longest_chain(graph: dict[str, set[str]], depth: dict[str, int]) -> list[str]:
    node = max(depth, key=depth.get)
    chain = [node]
    while graph.get(node):
        node = max(graph[node], key=lambda v: depth.get(v, 0))
        chain.append(node)
    return chain


def collapsed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph with each sub-package (``lexformer.X.*``) as one node."""
    def floor(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {}
    for u, vs in graph.items():
        out.setdefault(floor(u), set()).update(floor(v) for v in vs if floor(v) != floor(u))
    return out


def main(argv: list[str]) -> int:
    checkout = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    mods = modules(checkout / "src" / "lexformer")
    lines = sum(len(p.read_text().splitlines()) for p in mods.values())
    graph, functions = scan(mods)
    depth, cycles = depths(graph)
    floors = collapsed(graph)
    floor_depth, floor_cycles = depths(floors)
    short = [c.replace("lexformer.", "") for c in longest_chain(floors, floor_depth)]
    print(f"modules {len(mods)}, lines {lines}")
    print(f"longest functions: {', '.join(f'{f} ({n})' for n, f in functions[:3])}")
    print(f"functions over {LONG_FUNCTION} lines: "
          f"{[f for n, f in functions if n > LONG_FUNCTION] or 'none'}")
    print(f"import depth: {max(depth.values())} modules, {max(floor_depth.values())} package "
          f"floors ({' -> '.join(short)})")
    print(f"import cycles: {len(cycles) + len(floor_cycles)}")
    for cycle in cycles + floor_cycles:
        print("  " + " -> ".join(cycle))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
