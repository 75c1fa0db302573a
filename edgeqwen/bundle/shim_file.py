"""shim.py, the one file a bundle ships, assembled from the modules of edgeqwen/shim/.

The modules are joined in the order of `edgeqwen.shim.MODULES`: cli.py's docstring becomes the file's,
every other module's docstring a comment above its code, the standard-library imports are gathered at
the top, and the package's relative imports are dropped (each module's names are the file's globals).
The same sources always give the same bytes.

Assembling checks what makes the one file correct, and refuses with the module and line otherwise:
  - at module level a shim module imports only the standard library, and its own package by relative
    import; inside functions also the runtimes (onnxruntime_genai, openvino, openvino_genai) and numpy,
    which both runtimes install;
  - a relatively imported name is defined at the top level of a module that comes earlier;
  - no two modules define the same top-level name (they share one namespace in the file).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from edgeqwen import shim
from edgeqwen.errors import EdgeqwenError

SHIM_PACKAGE = Path(shim.__file__).parent
RUNTIME_MODULES = frozenset({"onnxruntime_genai", "onnxruntime_qnn", "openvino", "openvino_genai", "numpy"})
BANNER = "# " + "-" * 70


class AssemblyError(EdgeqwenError):
    """The shim package breaks a rule of the one-file assembly (a bug in edgeqwen, named precisely)."""


def is_stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names


def top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def import_problems(tree: ast.Module, module: str) -> list[str]:
    """Imports that would need more than the standard library and the bundle's runtime on the device."""
    problems = []
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: the package itself
                continue
            modules = [node.module or ""]
        else:
            continue
        allowed = is_stdlib if id(node) in top else (lambda m: is_stdlib(m) or m.split(".")[0] in RUNTIME_MODULES)
        for name in modules:
            if not allowed(name):
                where = "at module level" if id(node) in top else "inside a function"
                problems.append(f"edgeqwen/shim/{module}.py:{node.lineno}: imports {name} {where}")
    return problems


def assemble(package: Path = SHIM_PACKAGE, modules: tuple[str, ...] = shim.MODULES) -> str:
    """The text of shim.py, from the modules of `package` in the order of `modules`."""
    header, imports, bodies = "", {}, []
    defined: dict[str, str] = {}  # top-level name -> the module defining it
    problems: list[str] = []
    for module in modules:
        source = (package / f"{module}.py").read_text()
        tree = ast.parse(source)
        problems += import_problems(tree, module)
        skip = set()
        docstring = ast.get_docstring(tree)
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) or (node is tree.body[0] and docstring is not None
                                                                  and isinstance(node, ast.Expr)):
                skip.update(range(node.lineno, node.end_lineno + 1))
            if isinstance(node, ast.Import):
                for alias in node.names:
                    imports.setdefault(("import", alias.name), set())
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imports.setdefault(("from", node.module), set()).update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if defined.get(alias.name) != node.module:
                        problems.append(f"edgeqwen/shim/{module}.py:{node.lineno}: imports {alias.name} from "
                                        f".{node.module}, which does not define it before {module} in MODULES")
        for name in sorted(top_level_names(tree)):
            if name in defined:
                problems.append(f"edgeqwen/shim/{module}.py defines {name}, as edgeqwen/shim/{defined[name]}.py does")
            defined[name] = module
        code = "\n".join(line for number, line in enumerate(source.splitlines(), 1) if number not in skip).strip()
        if module == "cli":
            header = docstring or ""
        intro = "" if module == "cli" or not docstring else "".join(f"\n# {line}".rstrip() for line in
                                                                     docstring.splitlines())
        bodies.append(f"{BANNER} {module}{intro}\n\n{code}\n")
    imported = {name for (_, module), names in imports.items() for name in (names or {module.split('.')[0]})}
    clashes = sorted(imported & set(defined))
    problems += [f"edgeqwen/shim/{defined[name]}.py defines {name}, which another module imports" for name in clashes]
    if problems:
        raise AssemblyError("the shim package cannot be assembled into one file:\n  - " + "\n  - ".join(problems))
    import_lines = sorted(f"import {module}" for kind, module in imports if kind == "import")
    import_lines += sorted(f"from {module} import {', '.join(sorted(names))}"
                           for (kind, module), names in imports.items() if kind == "from")
    return (f'#!/usr/bin/env python3\n"""{header}\n"""\n\n' + "\n".join(import_lines) + "\n\n\n"
            + "\n\n".join(bodies) + '\n\nif __name__ == "__main__":\n    main()\n')


def write_shim(path: Path) -> Path:
    path.write_text(assemble())
    return path
