"""The preset registry: a name maps to a builder and its declared arguments, registered where the
builder is defined (tessera/models/presets.py) with @preset; a config's model section is checked
and normalised here before any job runs.

Nothing here imports Keras, so that the Snakefile can read the registry (names and declared
down-sampling) at parse time without starting a deep-learning framework.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tessera import TesseraError


@dataclass(frozen=True)
class Arg:
    """One declared argument of a preset: its default, and the integers or words it allows."""

    name: str
    default: object
    low: int = None
    high: int = None
    choices: tuple = ()

    def allowed(self):
        if self.choices:
            return "|".join(self.choices)
        return f"{self.low}..{self.high}"

    def check(self, value, preset):
        ok = (
            value in self.choices
            if self.choices
            else (
                isinstance(value, int)
                and not isinstance(value, bool)
                and self.low <= value <= self.high
            )
        )
        if not ok:
            raise TesseraError(
                f"model.{self.name}: {value!r} is not allowed for preset '{preset}'; use "
                + (
                    f"one of {self.allowed()}"
                    if self.choices
                    else f"an integer from {self.low} to {self.high}"
                )
                + f" (default {self.default})"
            )


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    # down-samplings as a function of the arguments: declared for checks before any job runs;
    # tests compare it to the built model
    downsamplings: Callable
    build: Callable
    args: tuple = ()
    # the output border and the receptive radius as functions of the arguments, declared (as the
    # down-samplings are) so that patches and tiles are checked before any job runs; tests
    # compare them to the built model. None: known only once built (no check before the job).
    border: Callable = None
    radius: Callable = None

    def arguments(self):
        return ", ".join(f"{a.name} ({a.allowed()}, default {a.default})" for a in self.args)


PRESETS = {}
DEFAULT_PRESET = "compact"
_FILE_KEYS = ("file", "function", "args")


def preset(name, description, downsamplings=lambda a: 0, args=(), border=None, radius=None):
    """Decorator: register a builder as the preset `name`. downsamplings(arguments) says how many
    times it halves the resolution, known before anything is built; args are its declared
    arguments (Arg), checked by normalise; border(arguments) and radius(arguments) its output
    border and receptive radius without a mask of holes (tests/unit/test_geometry.py compares
    both with the built network)."""

    def add(build):
        PRESETS[name] = Preset(name, description, downsamplings, build, tuple(args), border, radius)
        return build

    return add


def get_preset(name):
    if name not in PRESETS:
        raise TesseraError(
            f"model.preset: unknown preset '{name}'; choose one of: {', '.join(sorted(PRESETS))}"
        )
    return PRESETS[name]


def normalise(spec):
    """The model section of a config (or a preset's name) with every default filled in and every
    argument checked: {"preset": name, **arguments}, or for a network of one's own {"file",
    "function", "args", "hash"} (the hash of the file's code, comments left out), plus "init"
    when training starts from earlier weights, "mask" (a fill colour) when the task tells the
    network where its holes are (tessera.tasks.restore), and "factor" when the task enlarges
    (tessera.tasks.upscale): a preset's argument, or what a model file's output scale must be.
    Raises TesseraError naming the key."""
    from tessera import codeversion

    spec = {"preset": spec} if isinstance(spec, str) else dict(spec or {})
    init, mask = spec.pop("init", None), spec.pop("mask", None)
    holes_only = spec.pop("holes_only", True)
    if spec.get("preset", "") is None:
        del spec["preset"]  # preset: null, as with no preset: the default, or a model file
    if "file" in spec:
        if mask is not None:
            raise TesseraError(
                f"model.file: {spec['file']} gets the image alone; a mask of holes goes to the "
                "presets only (set mask: false on the holes degradation)"
            )
        extra = sorted(set(spec) - set(_FILE_KEYS) - {"hash", "factor"})
        if extra:
            raise TesseraError(
                f"model.{extra[0]}: a model file takes only {', '.join(_FILE_KEYS)} (and init); "
                "put the function's arguments under model.args"
            )
        path = Path(spec["file"])
        if not path.is_file():
            raise TesseraError(f"model.file: {path}: no such file")
        args = spec.get("args") or {}
        if not isinstance(args, dict):
            raise TesseraError(f"model.args: {args!r} is not a mapping of keyword arguments")
        out = {
            "file": str(path),
            "function": spec.get("function") or "build",
            "args": args,
            "hash": codeversion.file_hash(path),
        }
        if spec.get("factor", 1) != 1:
            out["factor"] = spec["factor"]
    else:
        name = spec.pop("preset", None) or DEFAULT_PRESET
        preset = get_preset(name)
        declared = {a.name: a for a in preset.args}
        for key in spec:
            if key == "factor" and key not in declared:
                enlarging = sorted(
                    p for p, v in PRESETS.items() if "factor" in (a.name for a in v.args)
                )
                raise TesseraError(
                    f"model.preset: {name} cannot enlarge an image (task.kind upscale); use "
                    f"{' or '.join(enlarging)}, or a model file of your own that enlarges"
                )
            if key not in declared:
                takes = preset.arguments() or "no arguments"
                raise TesseraError(
                    f"model.{key}: unknown argument of preset '{name}'; it takes: {takes}"
                )
        out = {"preset": name}
        for a in preset.args:
            value = spec.get(a.name, a.default)
            a.check(value, name)
            out[a.name] = value
    if mask is not None:
        if out.get("preset") == "seed":
            raise TesseraError(
                "model.preset: seed is the blog post's network layer for layer and takes no "
                "mask of holes; pick another preset, or set mask: false on the holes degradation"
            )
        out["mask"] = int(mask)
        if not holes_only:  # other damage too: the network mends every pixel, not the holes alone
            out["holes_only"] = False
    if init is not None:
        out["init"] = str(init)
    return out


def arguments(spec):
    """The arguments a builder is called with."""
    return {k: v for k, v in spec.items() if k not in ("preset", "init")}


def label(spec):
    """A short name for the network: "compact (width 48)", or "nets/mine.py:build"."""
    spec = normalise(spec)
    if "file" in spec:
        return f"{spec['file']}:{spec['function']}"
    preset = get_preset(spec["preset"])
    changed = [f"{a.name} {spec[a.name]}" for a in preset.args if spec[a.name] != a.default]
    if "mask" in spec:
        changed.append("told the holes")
    return spec["preset"] + (f" ({', '.join(changed)})" if changed else "")


def declared_size_multiple(spec):
    """The size multiple known before anything is built; 1 for a model file, which the training
    job measures and checks."""
    spec = normalise(spec)
    if "file" in spec:
        return 1
    return 2 ** get_preset(spec["preset"]).downsamplings(spec)


def declared_geometry(spec):
    """(size multiple, output border, receptive radius) of the network a model section
    describes, known before anything is built; None for a model file, or a preset that declares
    no reach (both measured by the training job)."""
    from tessera.models.layers import BIHARMONIC_STEPS, fill_reach

    spec = normalise(spec)
    if "file" in spec:
        return None
    p = get_preset(spec["preset"])
    if p.border is None or p.radius is None:
        return None
    # the fill of the holes comes before the network: its reach adds to the network's
    fill = fill_reach(BIHARMONIC_STEPS) if "mask" in spec else 0
    return 2 ** p.downsamplings(spec), p.border(spec), p.radius(spec) + fill


def build(spec):
    """The network a config's model section (or a preset's name) describes, as a Keras model.
    Checked as normalise checks it, whatever it holds; a model file's "hash" (the code it was
    trained with) is kept, so that build_file refuses a file whose code has changed since."""
    trained = spec.get("hash") if isinstance(spec, dict) and "file" in spec else None
    spec = normalise(spec)
    if trained is not None:
        spec["hash"] = trained
    if "file" in spec:
        from tessera.models.userfile import build_file

        return build_file(spec)
    return get_preset(spec["preset"]).build(**arguments(spec))
