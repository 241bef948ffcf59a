"""Configurations drawn from the schema itself (hypothesis): every key of
config/config.schema.yaml, mostly with values inside its range, now and then one outside it or of
another type, and variants and grids over the sections a variant may change.

The property that tests/unit/test_drawn_configs.py, tests/workflow/test_drawn_configs.py and
bench/configs.py check: a drawn configuration either plans or stops with exactly one
`tessera: error:` line naming a key, never with a traceback.
"""

import atexit
import copy
import json
import math
import os
import tempfile

import yaml
from hypothesis import strategies as st

from tessera import TesseraError, images, models, settings
from tests.conftest import REPO

SCHEMA_FILE = REPO / "config" / "config.schema.yaml"
SCHEMA = settings.load_schema(SCHEMA_FILE)


def _as_json():
    """The schema as a JSON file, for snakemake.utils.validate to fill in defaults from: the same
    schema, read in a tenth of the time its YAML takes (it reads the file on every call)."""
    fd, path = tempfile.mkstemp(prefix="tessera-schema-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(SCHEMA, f)
    atexit.register(os.unlink, path)
    return path


FILLING_SCHEMA = _as_json()
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
    ones: the rare branch is the largest); good alone where one_in is None."""
    if one_in is None:
        return good
    return st.integers(1, one_in).flatmap(lambda k: odd if k == one_in else good)


def _types(sub):
    types = sub.get("type", [])
    return [types] if isinstance(types, str) else list(types)


def _inside(sub, odd=ODD):
    """Values the entry allows (for open-ended ranges, values near the bounds and a few far off);
    odd: as for value, for the elements of a list."""
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
    if "array" in types:
        options.append(_array(sub, odd))
    return st.one_of(options) if options else _WRONG


def _array(sub, odd=ODD):
    """A list for an array entry: of mappings for a list of objects (task.degradations), else of
    values such as the [low, high] of a range, in either order."""
    items = sub.get("items", {})
    low = sub.get("minItems", 0)
    element = _item(items, odd) if "properties" in items else value(items, odd=odd)
    return st.lists(element, min_size=low, max_size=sub.get("maxItems", low + 3))


def _item(sub, odd=ODD):
    """A mapping for an object whose kind says which other keys it needs (the schema's allOf
    if/then on its kind): the kind, mostly with the keys it needs, the others now and then."""
    kind = sub["required"][0]
    props = sub["properties"]

    def of(name):
        needed = set()
        for rule in sub.get("allOf", []):
            condition = rule["if"]["properties"][kind]
            if name in condition.get("enum", [condition.get("const")]):
                needed |= set(rule["then"]["required"])
        required = {k: value(props[k], k, odd) for k in needed}
        others = {k: value(v, k, odd) for k, v in props.items() if k != kind and k not in needed}
        mapping = st.fixed_dictionaries({kind: st.just(name), **required})
        # an object with none of the keys it needs, or with keys of other kinds
        lacking = st.fixed_dictionaries({kind: st.just(name)}, optional={**required, **others})
        return _mostly(mapping, lacking, odd and 6)

    return _mostly(st.sampled_from(props[kind]["enum"]).flatmap(of), _WRONG, odd)


def _argument(arg, odd=ODD):
    """A value for a preset's declared argument (tessera.models.Arg)."""
    if arg.choices:
        good = st.sampled_from(arg.choices)
    else:
        good = _inside({"type": "integer", "minimum": arg.low, "maximum": arg.high})
    beyond = "other" if arg.choices else arg.high + 1
    return _mostly(good, st.one_of(_WRONG, st.just(beyond)), odd)


def _model(odd=ODD):
    """A model section: mostly a preset of the registry with some of its declared arguments,
    now and then the schema's own keys (a model file, init) drawn as any other."""

    def preset(name):
        args = {a.name: _argument(a, odd) for a in models.PRESETS[name].args}
        if odd is None:  # for the jobs: every argument drawn, each can shape the network
            return st.fixed_dictionaries({"preset": st.just(name), **args})
        return st.fixed_dictionaries({"preset": st.just(name)}, optional=args)

    presets = st.sampled_from(sorted(models.PRESETS)).flatmap(preset)
    return _mostly(presets, section(SCHEMA["properties"]["model"]), odd and 6)


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


def value(sub, name=None, odd=ODD):
    """A value for one schema entry: a mapping of its keys, or a scalar inside or outside (one
    time in odd; never where odd is None)."""
    if name == "model" and sub is SCHEMA["properties"]["model"]:
        return _model(odd)
    if "object" in _types(sub) and "properties" in sub:
        return section(sub, odd=odd)
    inside = st.sampled_from(KNOWN[name]) if name in KNOWN else _inside(sub, odd)
    return _mostly(inside, _outside(sub), odd)


def section(sub, keys=None, odd=ODD):
    """A mapping of some of a section's keys (each present or not), or now and then no mapping."""
    props = {k: value(v, k, odd) for k, v in sub["properties"].items() if keys is None or k in keys}
    mapping = st.fixed_dictionaries({}, optional=props)
    return _mostly(mapping, _WRONG, odd and odd * 3)


def _variant_name():
    good = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._~=+-]{0,6}\Z")
    odd = st.sampled_from(["shared", "model", "report", "a b", "-x", "ü"])
    return _mostly(good, odd)


def _variant():
    sections = {s: value(SCHEMA["properties"][s], s) for s in settings.VARIANT_SECTIONS}
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
            config[key] = draw(value(sub, key))
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


# The configurations drawn for the jobs' sake: the sections a job is given (those a variant may
# change), every value inside what the schema allows, and the kinds of task a job can be given
# without a folder of targets.
JOB_TASKS = ("reconstruct", "denoise", "restore", "upscale")


@st.composite
def job_configs(draw, folder):
    """A configuration of the sections that shape the jobs, each key drawn or left to its
    default, every value one the schema allows (they may still not fit together)."""
    top = SCHEMA["properties"]
    config = {"images": str(folder)}
    for key in settings.VARIANT_SECTIONS:
        config[key] = draw(value(top[key], key, odd=None))
    for key in ("gpus", "require_gpu", "threads"):  # the machine's to give: one device here
        config["train"].pop(key, None)
    kind = draw(st.sampled_from(JOB_TASKS))
    config["task"]["kind"] = kind
    if kind == "restore":
        chain = {**top["task"]["properties"]["degradations"], "minItems": 1}
        config["task"]["degradations"] = draw(_array(chain, odd=None))
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
        validate(config, FILLING_SCHEMA)  # fills in the defaults, as the Snakefile has it do
        grid = config["grid"]
        names = [f"point{i}" for i in range(math.prod(len(v) for v in grid.values()))]
        overrides = {**settings.grid_overrides(grid, names), **config["variants"]}
        variants = settings.variant_configs(config, SCHEMA, overrides)
        settings.check(config)
        outputs = (config["results"], config["logs"])
        images.discover(config["images"], config["recursive"], outputs)
        # rules/common.smk: targets and task.kind paired go together, and the folder must hold
        # the images' partners
        paired = [c["task"]["kind"] == "paired" for c in [config, *variants.values()]]
        if config["targets"] and not all(paired):
            raise TesseraError("targets: set, but task.kind is not paired")
        if not config["targets"] and any(paired):
            raise TesseraError("task.kind: paired needs targets")
        if config["targets"]:
            images.discover(config["targets"], config["recursive"], outputs, key="targets")
    except TesseraError as e:
        return str(e)
    return None


def whole_configs(config):
    """The whole configuration of the run and of each of its variants, for a configuration that
    plans (check_in_process gave None): what the jobs are given."""
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    settings.coerce(config, SCHEMA)
    validate(config, FILLING_SCHEMA)
    grid = config["grid"]
    names = [f"point{i}" for i in range(math.prod(len(v) for v in grid.values()))]
    overrides = {**settings.grid_overrides(grid, names), **config["variants"]}
    return [config, *settings.variant_configs(config, SCHEMA, overrides).values()]


# What only sets a job's cost, not whether it trips, is made small when the jobs are run here:
# a network's widths (its geometry comes from its depth, levels, kernel and padding), the
# batches (2 patches, 1 tile), the validation patches. Memory has its own estimate, checked
# before any job (settings.memory_mb).
SMALL = {"width": 4, "latent": 4}
LARGEST_TILE = 1024  # a larger tile is left out of the sample: seconds of one tile on a CPU


def job_settings(c):
    """The settings the training and reconstruction jobs of configuration c get, small."""
    spec = models.normalise(c["model"])
    spec = {k: min(v, SMALL[k]) if k in SMALL else v for k, v in spec.items()}
    train = {k: v for k, v in c["train"].items() if k not in ("threads", "require_gpu")}
    # one device: a GPU count is the machine's to give, checked against the batch before any job
    train = {**train, "model": spec, "batch_size": 2, "gpus": 1, "steps_per_epoch": 1}
    rec = {k: v for k, v in c["reconstruct"].items() if k != "threads"}
    return train, c["patches"], c["task"], rec


def _patches(c):
    """Four random patches of the configuration's size, as the patch stage cuts them."""
    import numpy as np

    size = c["patches"]["size"]
    return np.random.default_rng(0).integers(0, 256, (4, size, size, 3), np.uint8)


def _ended(step):
    """None if step() returns, else how it ended: the error's kind and first line."""
    try:
        step()
    except Exception as e:
        return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}"
    return None


def host_side(c):
    """The training job's host side for configuration c: a batch of its task's damage drawn as
    training draws it (tessera.batches.Batches, numpy only), and its fixed validation damage.
    Returns None, or how it ended."""
    from tessera import batches

    train, _, task, _ = job_settings(c)

    def step():
        clean = _patches(c)
        source = batches.Patches(batches.InMemory([clean]))
        batches.Batches(source, 2, train["seed"], train["augment"], steps=1, task=task)[0]
        batches.validation_pair(clean, task)

    return _ended(step)


def trainer_side(c):
    """The training job's network built and the model that trains it made (which refuses a patch
    the network leaves no output of), without a step. Returns None, or how it ended."""
    from tessera import batches, train as training

    train, patches, task, _ = job_settings(c)

    def step():
        network = models.build(training.model_spec(train, task))
        batches.Trainer(network, patches["size"], task, train["seed"])

    return _ended(step)


def run_jobs(c, work, photo):
    """Run in this process what decides whether the jobs of configuration c trip, small: the
    training job's network built and compiled, one batch of its task's damage drawn on the host
    and one training step; then the reconstruction job's tiles of one photo planned, run through
    the network and stitched. Returns None, or how it ended."""
    import keras

    from tessera import backend, batches, reconstruct, train as training

    train, patches, task, rec = job_settings(c)
    size = patches["size"]
    data = {"size": size, "stride": patches["stride"], "sampling": "grid", "max_val_patches": 4}

    def step():
        keras.config.set_dtype_policy(backend.precision(train["precision"])[0])
        keras.utils.set_random_seed(train["seed"])
        core, trainer, info, _ = training.compiled_model(train, data, task, lambda *_: None)
        source = batches.Patches(batches.InMemory([_patches(c)]))
        given = batches.Batches(source, 2, train["seed"], train["augment"], steps=1, task=task)
        trainer.run_eagerly = True  # one step: tracing it would cost more than running it
        trainer.train_on_batch(*given[0])
        summary = {**info, "task": task}
        reconstruct.rebuild(
            core, summary, photo, photo.name, work / "out.png", None, rec["tile"],
            rec["margin"], rec["mode"], 1, task, None, rec["ensemble"],
        )  # fmt: skip

    before = keras.config.dtype_policy()
    try:
        return _ended(step)
    finally:
        keras.config.set_dtype_policy(before)
