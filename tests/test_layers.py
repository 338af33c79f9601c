"""The import graph of the installed package (docs/architecture.md): every module's imports, read
from its source (AST, nothing imported), must point down the layers, form no cycle, name the
namespace (never a bare ``golden`` / ``hw`` / ...), and sit at module level unless a comment on
the import line gives the reason (an optional heavy dependency)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Folder (= subpackage of intdeploy) -> layer; a module may import its own package and lower
#: layers. hw and host are peers: neither imports the other.
LAYERS = {"golden": 0, "wire": 1, "hw": 2, "host": 2, "sim": 3, "tools": 4}


def _modules():
    """``{dotted name: (path, package)}`` of every module of the package."""
    out = {}
    for pkg in LAYERS:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out["intdeploy." + ".".join(parts)] = (path, pkg)
    return out


def imports(path):
    """``(module, line, local, commented)`` for every absolute import in ``path``."""
    src = path.read_text()
    lines = src.split("\n")
    tree = ast.parse(src)
    local = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            out.append((name, node.lineno, id(node) in local, "#" in lines[node.lineno - 1]))
    return out


def violations(modules=None):
    """Every breach of the rules above, one line each (empty: the graph is fine)."""
    modules = modules or _modules()
    bad, graph = [], {m: set() for m in modules}
    for mod, (path, pkg) in modules.items():
        where = path.relative_to(ROOT)
        for name, line, local, commented in imports(path):
            top = name.split(".")[0]
            if top in LAYERS:
                bad.append(f"{where}:{line}: bare import of {name!r}; import intdeploy.{name}")
                continue
            if local and not commented:
                bad.append(f"{where}:{line}: function-local import of {name!r} without a reason comment")
            if top != "intdeploy" or name not in modules:
                continue
            target = modules[name][1]
            if target != pkg and LAYERS[target] >= LAYERS[pkg]:
                bad.append(f"{where}:{line}: {pkg} (layer {LAYERS[pkg]}) imports {name} ({target}, layer "
                           f"{LAYERS[target]})")
            if name != mod:
                graph[mod].add(name)
    # cycles: depth-first search over the module graph
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                bad.append("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m)
    return bad


def test_imports_follow_the_layers():
    assert violations() == []


@pytest.mark.parametrize("planted, message", [
    ("from intdeploy.hw import config\n", "golden (layer 0) imports intdeploy.hw.config (hw, layer 2)"),
    ("from intdeploy.sim import runner\n", "golden (layer 0) imports intdeploy.sim.runner (sim, layer 3)"),
    ("from golden import add\n", "bare import of 'golden'"),
    ("def f():\n    import intdeploy.golden.pool\n", "function-local import of 'intdeploy.golden.pool' without"),
    ("from intdeploy.golden import network\n", "import cycle: intdeploy.golden.add -> intdeploy.golden.network"),
])
def test_a_planted_import_is_caught(tmp_path, monkeypatch, planted, message):
    """Each rule fails on a planted breach in a copy of golden/add.py (network imports add via its
    imports, so importing network from add closes a cycle)."""
    modules = _modules()
    path, pkg = modules["intdeploy.golden.add"]
    copy = tmp_path / "add.py"
    copy.write_text(path.read_text() + "\n" + planted)
    monkeypatch.setattr(Path, "relative_to", lambda self, other: self)
    modules["intdeploy.golden.add"] = (copy, pkg)
    assert any(message in v for v in violations(modules)), violations(modules)
