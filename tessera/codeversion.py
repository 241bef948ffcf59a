"""A fingerprint of the library code a workflow script runs, for Snakemake's params.

Snakemake reruns a job when its script file changes, but not when a module that the script imports
changes. Giving each rule a hash of the tessera modules its script actually imports (found by
reading the import statements, followed through the library) makes it rerun for those too.
"""

import ast
import hashlib
from pathlib import Path

PACKAGE = "tessera"
_ROOT = Path(__file__).resolve().parent


def _imported_modules(path):
    """Names of the tessera submodules a file imports, e.g. {"models", "images"}."""
    found = set()
    for node in ast.walk(ast.parse(Path(path).read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside the package
                base = node.module or ""
                names = [f"{PACKAGE}.{base}" if base else PACKAGE] + [
                    f"{PACKAGE}.{base + '.' if base else ''}{a.name}" for a in node.names
                ]
            else:
                base = node.module or ""
                names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == PACKAGE and len(parts) > 1 and (_ROOT / f"{parts[1]}.py").exists():
                found.add(parts[1])
    return found


def modules_used(script):
    """Every tessera module a script depends on, directly or through other tessera modules."""
    todo, seen = list(_imported_modules(script)), {"__init__"}
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_imported_modules(_ROOT / f"{name}.py"))
    return sorted(seen)


def code_hash(script):
    """A short hash of the modules (and their templates) that a script uses."""
    h = hashlib.sha256()
    for name in modules_used(script):
        files = [_ROOT / f"{name}.py", *sorted((_ROOT / "templates").glob(f"{name}.*"))]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]
