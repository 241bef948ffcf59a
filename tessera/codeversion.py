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


def _imported_modules(path):
    """Names of the tessera submodules a file imports, e.g. {"models", "images"}."""
    names = _imports_in(Path(path).read_bytes(), str(path))
    return {name for name in names if (_ROOT / f"{name}.py").exists()}


# Every rule's hash reads the shared modules (jobs, images, ...) again: parse each content once.
@functools.lru_cache(maxsize=256)
def _imports_in(source, filename):
    """The X of every `tessera.X` a source imports, module or not."""
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
                found.add(parts[1])
    return frozenset(found)


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
            h.update(f.name.encode() + b"\0")
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
