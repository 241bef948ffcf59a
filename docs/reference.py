"""The parts of the docs that are made from the code, so that they cannot drift from it.

    python docs/reference.py          rewrite them
    python docs/reference.py --check  exit 1, naming the file, if one is out of date

Today that is the table of presets in docs/networks.md, made from the preset registry
(tessera.models.PRESETS: each preset's name, description and declared arguments) and the networks
the presets build. A block starts with a line `<!-- made by docs/reference.py: NAME -->` and ends
with `<!-- end NAME -->`; everything between is written here. tests/unit/test_docs.py runs the
check.
"""

import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _count(weights):
    return sum(int(w.numpy().size) if hasattr(w, "numpy") else int(w.size) for w in weights)


def _allowed(arg):
    # "|" would end a Markdown table's cell
    return " or ".join(arg.choices) if arg.choices else f"{arg.low}..{arg.high}"


def presets_table():
    """The presets as a Markdown table, in the registry's order: arguments with their allowed
    values and defaults, the parameters of the network built at the defaults, and what it is."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tessera import models

    rows = [
        "| preset | arguments: allowed values (default) | parameters at the defaults | what it is |",
        "|---|---|---|---|",
    ]
    for name, preset in models.PRESETS.items():
        args = "; ".join(f"`{a.name}`: {_allowed(a)} ({a.default})" for a in preset.args)
        model = models.build(name)
        fixed = _count(model.non_trainable_weights)
        params = f"{model.count_params():,}" + (f" ({fixed:,} non-trainable)" if fixed else "")
        default = " (default)" if name == models.DEFAULT_PRESET else ""
        default = "" if "(default)" in preset.description else default
        rows.append(f"| `{name}`{default} | {args or 'none'} | {params} | {preset.description} |")
    return "\n".join(rows)


BLOCKS = {"presets": ("docs/networks.md", presets_table)}


def updated(text, name, body):
    """text with the block `name` holding body; ValueError if the text has no such block."""
    pattern = re.compile(
        rf"(<!-- made by docs/reference.py: {name} -->\n).*?(\n<!-- end {name} -->)", re.S
    )
    if not pattern.search(text):
        raise ValueError(f"no block '{name}'")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def stale():
    """{path: its up-to-date text} for each file whose blocks are out of date."""
    out = {}
    for name, (path, make) in BLOCKS.items():
        file = REPO / path
        text = out.get(path, file.read_text(encoding="utf-8"))
        new = updated(text, name, make())
        if new != file.read_text(encoding="utf-8"):
            out[path] = new
    return out


def main(argv):
    sys.path.insert(0, str(REPO))
    changed = stale()
    if "--check" in argv:
        for path in changed:
            print(f"{path} is out of date: run python docs/reference.py", file=sys.stderr)
        return 1 if changed else 0
    for path, text in changed.items():
        (REPO / path).write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
