"""Configurations drawn from the schema itself (hypothesis): every key of
config/config.schema.yaml, mostly with values inside its range, now and then one outside it or of
another type, and variants and grids over the sections a variant may change.

The property that tests/unit/test_drawn_configs.py, tests/workflow/test_drawn_configs.py and
bench/configs.py check: a drawn configuration either plans or stops with exactly one
`tessera: error:` line naming a key, never with a traceback.
"""

import copy
import math

import yaml
from hypothesis import strategies as st

from tessera import TesseraError, images, models, settings
from tests.conftest import REPO

SCHEMA_FILE = REPO / "config" / "config.schema.yaml"
SCHEMA = settings.load_schema(SCHEMA_FILE)
# One value in this many is drawn outside its range or of another type: rare enough that about a
# third of the configurations are valid throughout, and reach the checks after the schema's.
ODD = 12
_TEXT = st.text(st.sampled_from("abcxyz019._-~/ "), max_size=8)
_WRONG = st.one_of(
    _TEXT,
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["a", "size"]), st.integers(0, 3), max_size=1),
)


def _mostly(good, odd, one_in=ODD):
    """good, and odd one time in one_in (hypothesis draws small integers more often than large
    ones: the rare branch is the largest)."""
    return st.integers(1, one_in).flatmap(lambda k: odd if k == one_in else good)


def _types(sub):
    types = sub.get("type", [])
    return [types] if isinstance(types, str) else list(types)


def _inside(sub):
    """Values the entry allows (for open-ended ranges, values near the bounds and a few far off)."""
    if "enum" in sub:
        return st.sampled_from(sub["enum"])
    options = []
    types = _types(sub)
    if "null" in types:
        options.append(st.none())
    low = sub.get("minimum", sub.get("exclusiveMinimum"))
    high = sub.get("maximum", sub.get("exclusiveMaximum"))
    if "integer" in types:
        lo = -(2**40) if low is None else low + ("exclusiveMinimum" in sub)
        hi = lo + 2**16 if high is None else high - ("exclusiveMaximum" in sub)
        near = st.integers(lo, min(hi, lo + 64)) | st.integers(max(lo, hi - 64), hi)
        options.append(near | st.integers(lo, hi))
    elif "number" in types:
        lo = -1e6 if low is None else low
        hi = lo + 1e6 if high is None else high
        floats = st.floats(
            lo,
            hi,
            exclude_min="exclusiveMinimum" in sub,
            exclude_max="exclusiveMaximum" in sub,
            allow_nan=False,
        )
        options.append(floats)
    if "boolean" in types:
        options.append(st.booleans())
    if "string" in types:
        options.append(_TEXT.filter(lambda t: len(t) >= sub.get("minLength", 0)))
    return st.one_of(options) if options else _WRONG


def _outside(sub):
    """Values the entry refuses, or that only a check after the schema's may refuse (NaN)."""
    options = [_WRONG]
    for key, step in (("minimum", -1), ("exclusiveMinimum", 0), ("maximum", 1)):
        if key in sub:
            options.append(st.just(sub[key] + step))
    if "number" in _types(sub) or "integer" in _types(sub):
        options.append(st.sampled_from([math.nan, math.inf, -math.inf, 10**30]))
    return st.one_of(options)


# Strings the schema leaves open but the workflow knows: drawn from what it knows, mostly.
KNOWN = {"preset": sorted(models.PRESETS)}


def value(sub, name=None):
    """A value for one schema entry: a mapping of its keys, or a scalar inside or outside."""
    if "object" in _types(sub) and "properties" in sub:
        return section(sub)
    inside = st.sampled_from(KNOWN[name]) if name in KNOWN else _inside(sub)
    return _mostly(inside, _outside(sub))


def section(sub, keys=None):
    """A mapping of some of a section's keys (each present or not), or now and then no mapping."""
    props = {k: value(v, k) for k, v in sub["properties"].items() if keys is None or k in keys}
    mapping = st.fixed_dictionaries({}, optional=props)
    return _mostly(mapping, _WRONG, ODD * 3)


def _variant_name():
    good = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._~=+-]{0,6}\Z")
    odd = st.sampled_from(["shared", "model", "report", "a b", "-x", "ü"])
    return _mostly(good, odd)


def _variant():
    sections = {s: section(SCHEMA["properties"][s]) for s in settings.VARIANT_SECTIONS}
    override = st.fixed_dictionaries({}, optional=sections)
    odd = st.one_of(st.none(), st.just({"images": "x"}), st.just({"split": {"seed": 1}}))
    return _mostly(override, odd)


def _grid_key():
    keys = [
        f"{s}.{k}" for s in settings.VARIANT_SECTIONS for k in SCHEMA["properties"][s]["properties"]
    ]
    odd = st.sampled_from(["images", "train", "train.", "split.seed", "train.nope"])
    return _mostly(st.sampled_from(keys), odd)


def _grid():
    def values_of(key):
        section, _, name = key.partition(".")
        sub = SCHEMA["properties"].get(section, {}).get("properties", {}).get(name, {})
        return st.lists(value(sub, name) if sub else _WRONG, min_size=1, max_size=2)

    pairs = st.lists(_grid_key(), min_size=1, max_size=2, unique=True).flatmap(
        lambda keys: st.tuples(*(values_of(k) for k in keys)).map(lambda vs: dict(zip(keys, vs)))
    )
    return _mostly(pairs | st.just({}), _WRONG.map(lambda w: {"train.epochs": w}))


@st.composite
def configs(draw, folder):
    """A whole configuration for an images folder (a folder of a few small images): every
    top-level key of the schema now and then, variants and grids among them."""
    top = SCHEMA["properties"]
    config = {}
    odd = st.sampled_from([str(folder / "missing"), str(folder / "a.png"), ""])
    config["images"] = draw(_mostly(st.just(str(folder)), odd))
    for key, sub in top.items():
        if key in ("images", "results", "logs", "variants", "grid", "apply"):
            continue
        if draw(st.booleans()):
            config[key] = draw(value(sub))
    for key in ("results", "logs"):
        if draw(st.integers(1, 3)) == 3:
            odd = st.sampled_from(["", " ", ".", str(folder)])
            config[key] = draw(_mostly(st.sampled_from([f"{key}-drawn", f"out/{key}"]), odd, 4))
    if draw(st.integers(1, 4)) == 4:
        variants = st.dictionaries(_variant_name(), _variant(), max_size=2)
        config["variants"] = draw(_mostly(variants, _WRONG))
    if draw(st.integers(1, 4)) == 4:
        config["grid"] = draw(_grid())
    if draw(st.integers(1, 8)) == 8:
        config["apply"] = draw(section(top["apply"]))
        if isinstance(config["apply"], dict) and draw(st.booleans()):
            config["apply"]["images"] = str(folder)
    return config


def write(path, config):
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def check_in_process(config):
    """What the Snakefile and rules/common.smk check before any job, in this process: the schema
    (with its defaults filled in), the cross-setting checks, each variant of the variants and the
    grid, and image discovery. Returns None, or the one-line message of the TesseraError."""
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    try:
        settings.coerce(config, SCHEMA)
        settings.validate(config, SCHEMA)
        validate(
            config, str(SCHEMA_FILE)
        )  # fills in the defaults, as the Snakefile has Snakemake do
        grid = config["grid"]
        names = [f"point{i}" for i in range(math.prod(len(v) for v in grid.values()))]
        overrides = {**settings.grid_overrides(grid, names), **config["variants"]}
        settings.variant_configs(config, SCHEMA, overrides)
        settings.check(config)
        images.discover(config["images"], config["recursive"], (config["results"], config["logs"]))
    except TesseraError as e:
        return str(e)
    return None
