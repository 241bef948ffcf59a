"""A fingerprint of the library code a workflow script runs, for Snakemake's params.

Snakemake reruns a job when its script file changes, but not when a module that the script imports
changes. Giving each rule a hash of the tessera modules its script actually imports (found by
reading the import statements, followed through the library) makes it rerun for those too.

Only code counts: comments, blank lines and spacing are left out of the hash, so that explaining a
line never retrains a model. Docstrings and every other token count.
"""

import ast
import functools
import hashlib
import io
import tokenize
from pathlib import Path

PACKAGE = "tessera"
_ROOT = Path(__file__).resolve().parent


def _module_file(name):
    """The file of tessera module `name` ("images", "models.registry", or a package such as
    "models"), or None when the name is not a module (a function imported from one)."""
    path = _ROOT.joinpath(*name.split("."))
    for candidate in (path.with_name(path.name + ".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path):
    """Names of the tessera modules a file imports, e.g. {"models", "models.layers", "images"};
    a module inside a package brings the package's __init__ with it, as Python runs it."""
    found = set()
    for name in _imports_in(Path(path).read_bytes(), str(path)):
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            if _module_file(".".join(parts[:k])) is not None:
                found.add(".".join(parts[:k]))
    return found


# Every rule's hash reads the shared modules (jobs, images, ...) again: parse each content once.
@functools.lru_cache(maxsize=256)
def _imports_in(source, filename):
    """The X.Y of every `tessera.X.Y` a source imports, module or not."""
    found = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
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
            if parts[0] == PACKAGE and len(parts) > 1:
                found.add(".".join(parts[1:]))
    return frozenset(found)


def modules_used(script):
    """Every tessera module a script depends on, directly or through other tessera modules."""
    todo, seen = list(_imported_modules(script)), {"__init__"}
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_imported_modules(_module_file(name)))
    return sorted(seen)


def code_hash(script):
    """A short hash of the modules (and their templates) that a script uses."""
    h = hashlib.sha256()
    for name in modules_used(script):
        files = [_module_file(name), *sorted((_ROOT / "templates").glob(f"{name}.*"))]
        for f in files:
            h.update(f.relative_to(_ROOT).as_posix().encode() + b"\0")
            h.update(_digest(f.read_bytes(), f.suffix == ".py"))
    return h.hexdigest()[:12]


def file_hash(path):
    """A short hash of one Python file's code, comments and spacing left out (a user's model file:
    editing it retrains, explaining a line in it does not)."""
    return hashlib.sha256(_digest(Path(path).read_bytes(), True)).hexdigest()[:12]


_LAYOUT = {tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE, tokenize.ENDMARKER}
_IGNORED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING}


@functools.lru_cache(maxsize=256)
def _digest(content, python):
    return hashlib.sha256(_code_tokens(content) if python else content).digest()


def _code_tokens(source):
    """Python source reduced to its tokens, without comments, blank lines or spacing."""
    tokens = tokenize.tokenize(io.BytesIO(source).readline)
    kept = [
        tokenize.tok_name[t.type] if t.type in _LAYOUT else t.string
        for t in tokens
        if t.type not in _IGNORED
    ]
    return "\0".join(kept).encode()
