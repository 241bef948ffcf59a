"""Configuration checks: the JSON schema with one-line messages, and what it cannot check.

The schema (config/config.schema.yaml) checks each key alone: validate() applies it with a one-line
message naming the key and the values allowed, before snakemake.utils.validate fills in defaults.
This module also reads command-line values in the types the schema asks for, and checks the
settings that must fit together, before any job runs.
"""

import json
import os

import yaml

from tessera import TesseraError, models


def coerce(config, schema):
    """Read settings given as text as a config file gives them. Snakemake reads
    `--config key='{a: 1}'` with every value inside a string: each is read in the type the schema
    asks for, and where the schema leaves the type open (a preset's arguments, a model file's
    args) as YAML reads it. The overrides of variants and the values of a grid are read by the
    schema of the settings they change."""
    if not isinstance(config, dict):
        return config
    for key, value in config.items():
        if key not in ("variants", "grid"):
            config[key] = _read(value, _entry(schema, key))
    variants = config.get("variants")
    if isinstance(variants, dict):
        for name, override in variants.items():
            if isinstance(override, dict):
                coerce(override, schema)
    grid = config.get("grid")
    if isinstance(grid, dict):
        for key, values in grid.items():
            section, _, setting = str(key).partition(".")
            sub = _entry(_entry(schema, section), setting) if section in VARIANT_SECTIONS else None
            if isinstance(values, list) and sub is not None:
                grid[key] = [_read(v, sub) for v in values]
    return config


def _entry(schema, key):
    """The schema of a key of a mapping: its own entry, else what the mapping allows of any key
    ({}: anything, read as YAML reads it)."""
    if not isinstance(schema, dict):
        return {}
    extra = schema.get("additionalProperties", True)
    return schema.get("properties", {}).get(key, extra if isinstance(extra, dict) else {})


def _read(value, sub):
    if isinstance(value, dict):
        return {k: _read(v, _entry(sub, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_read(v, sub.get("items", {})) for v in value]
    if not isinstance(value, str):
        return value
    types = sub.get("type", [])
    types = {types} if isinstance(types, str) else set(types)
    if types <= {"string"} and (types or "enum" in sub):
        return value  # text where the schema asks for text, whatever it looks like
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(parsed, str) and "number" in types:
        try:
            parsed = float(value)  # YAML reads 1e-3 (no dot) as text
        except ValueError:
            pass
    return value if isinstance(parsed, str) else _read(parsed, sub)


def config_layers(defaults, files, given):
    """The settings as given, lowest first: the workflow's own config files that exist, each
    config file given (--configfile), then the values given (--config)."""
    layers = []
    for path in [f for f in defaults if os.path.exists(f)] + list(files):
        with open(path, encoding="utf-8") as f:
            layers.append(yaml.safe_load(f) or {})  # YAML reads JSON too
    return layers + [dict(given)]


def layered_model(layers):
    """The model section of settings given in layers (config/config.yaml, each --configfile, then
    --config), each merged into those below it as Snakemake merges them, except that a model
    section that names its network (preset or file) replaces the one below: a model file given
    over the default preset is that file alone. None if no layer has a model section."""
    import copy

    model = None
    for layer in layers:
        if not isinstance(layer, dict) or "model" not in layer:
            continue
        section = copy.deepcopy(layer["model"])
        names = isinstance(section, dict) and {"preset", "file"} & set(section)
        if isinstance(model, dict) and isinstance(section, dict) and not names:
            section = _merged(model, section)
        model = section
    return model


def _merged(below, above):
    out = dict(below)
    for key, value in above.items():
        both = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = _merged(out[key], value) if both else value
    return out


# The memory (MB) each rule asks for: its resources read it here, and check() refuses settings
# whose estimated memory would pass it, so the rule and the check cannot disagree.
MEM_MB = {"train": 8000, "reconstruct": 4000}
# What the estimates below count, measured on compact and dncnn at their defaults (float32,
# TensorFlow on a CPU, batches of 1 and 16 tiles or patches of 256x256): a job's fixed start
# (Python, TensorFlow, the model), about 0.8 GB; the bytes one pixel of a batch adds in inference
# (240 to 270 measured: 300) and in a training step (activations kept for the gradients, 930 for
# compact and 1,300 for dncnn: 2,000 leaves room for wider networks).
BASE_MB = 1000
INFER_BYTES_PER_PIXEL = 300
TRAIN_BYTES_PER_PIXEL = 2000
# Validation runs in batches of this many patches (tessera.batches.in_batches).
VAL_BATCH = 256


def memory_mb(config):
    """Estimated peak memory of the training and the reconstruction jobs for the settings:
    {rule: (MB in all, [(MB, what, the key that drives it), ...])}. Counts what the settings make
    a job hold (patches, batches, tiles), not the images themselves."""
    size = config["patches"]["size"]
    pixels = size * size
    val = config["split"]["max_val_patches"]
    copies = 1 if config["task"]["kind"] == "reconstruct" else 2  # a noisy copy beside the clean
    batch = config["train"]["batch_size"]
    rec = config["reconstruct"]
    # the key further above its default (tile 128, batch 8) is the one to name first
    tiles = "reconstruct.tile" if rec["tile"] ** 2 / 128**2 >= rec["batch_size"] / 8 else None
    terms = {
        "train": [
            (val * pixels * 3 * copies, f"{val} validation patches", "split.max_val_patches"),
            (VAL_BATCH * pixels * INFER_BYTES_PER_PIXEL, "a validation batch", "patches.size"),
            (batch * pixels * TRAIN_BYTES_PER_PIXEL, "a training batch", "train.batch_size"),
        ],
        "reconstruct": [
            (
                rec["batch_size"] * rec["tile"] ** 2 * INFER_BYTES_PER_PIXEL,
                f"a batch of {rec['batch_size']} tiles of {rec['tile']}x{rec['tile']}",
                tiles or "reconstruct.batch_size",
            )
        ],
    }
    return {
        rule: (BASE_MB + sum(t[0] for t in ts) / 1e6, [(b / 1e6, w, k) for b, w, k in ts])
        for rule, ts in terms.items()
    }


# The keys that lower each job's memory, named in its message after the one that weighs most.
_MEMORY_KEYS = {
    "train": ("split.max_val_patches", "train.batch_size", "patches.size"),
    "reconstruct": ("reconstruct.batch_size", "reconstruct.tile"),
}


def _check_memory(config, mem_mb):
    for rule, (estimate, terms) in memory_mb(config).items():
        limit = mem_mb.get(rule, MEM_MB[rule])
        if estimate > limit:
            key = max(terms)[2]
            others = [k for k in _MEMORY_KEYS[rule] if k != key]
            parts = ", ".join(f"{w} {mb:,.0f} MB" for mb, w, _ in terms)
            raise TesseraError(
                f"{key}: {_get(config, key)} makes the {rule} job need about {estimate:,.0f} MB "
                f"({parts}), over its mem_mb of {limit}; lower {key} (or {' or '.join(others)}), "
                f"or give the job more memory (--set-resources {rule}:mem_mb=N)"
            )


def _get(config, dotted):
    section, _, key = dotted.partition(".")
    return config[section][key]


def _check_folders(config):
    for key in ("results", "logs"):
        if not str(config[key]).strip():
            raise TesseraError(f"{key}: an empty path is not allowed; name a folder, e.g. {key}")
    images = os.path.realpath(config["images"])
    for key in ("results", "logs"):
        folder = os.path.realpath(config[key])
        if images == folder or images.startswith(folder.rstrip(os.sep) + os.sep):
            raise TesseraError(
                f"{key}: '{config[key]}' holds the images folder '{config['images']}'; choose a "
                f"{key} folder outside it"
            )


def check(config, mem_mb=None):
    """Cross-setting checks: raise TesseraError naming the keys and the values that would work.
    mem_mb: the memory of the rules where a run sets it (--set-resources), else MEM_MB."""
    spec = models.normalise(config["model"])
    from tessera import tasks

    # what the task adds to the network (a mask of holes) may not fit it: say so before any job
    kind = tasks.get(config["task"])
    spec_with_mask = models.normalise({**spec, **kind.model_options(config["task"])})
    if spec_with_mask.get("factor", 1) != 1 and config["task"]["kind"] != "upscale":
        raise TesseraError(
            f"model.factor: {spec['factor']} makes the network enlarge the image, which only "
            f"task.kind upscale trains (with task.factor); leave it out for task.kind "
            f"{config['task']['kind']}"
        )
    preset = models.label(spec)
    m = models.declared_size_multiple(spec)
    size = config["patches"]["size"]
    kind.check(config["task"], size, m)
    if size % m:
        raise TesseraError(
            f"patches.size: {size} is not a multiple of {m}, the size multiple of preset '{preset}'; "
            f"use {size - size % m or m} or {size + m - size % m}"
        )
    rec = config["reconstruct"]
    if rec["tile"] % m:
        raise TesseraError(
            f"reconstruct.tile: {rec['tile']} is not a multiple of {m}, the size multiple of preset "
            f"'{preset}'; use {rec['tile'] + m - rec['tile'] % m}"
        )
    margin = rec["margin"]
    if margin is not None and rec["mode"] != "naive":
        stride = rec["tile"] - 2 * margin
        if stride <= 0 or stride % m:
            raise TesseraError(
                f"reconstruct.margin: tile {rec['tile']} - 2 x margin {margin} = {stride} must be a "
                f"positive multiple of {m} (preset '{preset}'); lower the margin or raise the tile"
            )
    _check_reach(config, models.declared_geometry(spec_with_mask), tasks.get(config["task"]))
    task = config["task"]
    _check_ranges(task)
    salt = task["kind"] == "denoise" and task.get("noise") == "salt_pepper"
    # a rate so small that 1 - rate / 2 rounds to 1 turns no pixel either (and the training
    # step's quantile of it is infinite)
    if salt and 1 - task.get("rate", 0.1) / 2 == 1:
        raise TesseraError(
            f"task.rate: {task['rate']} adds no salt_pepper noise, nothing to learn to remove; "
            "use a rate above 0 and up to 1"
        )
    train = config["train"]
    if train["batch_size"] % train["gpus"]:
        b, g = train["batch_size"], train["gpus"]
        use = " or ".join(str(n) for n in sorted({b - b % g or g, b + g - b % g}))
        raise TesseraError(
            f"train.batch_size: {b} is not a multiple of train.gpus ({g}): each device gets an "
            f"equal share of every batch; use {use}"
        )
    _check_folders(config)
    _check_memory(config, mem_mb or {})


def _check_reach(config, geometry, task):
    """Patches and tiles that leave the network no output, or a margin below its output border:
    what the training and reconstruction jobs would stop on, for a network whose reach is known
    before it is built (models.declared_geometry; None: measured by the training job)."""
    size, scale = config["patches"]["size"], task.scale(config["task"])
    if scale != 1 and size % scale:
        raise TesseraError(
            f"patches.size: {size} is not a multiple of task.factor {scale}, which shrinks each "
            f"patch {scale} times; use {size - size % scale} or {size + scale - size % scale}"
        )
    if geometry is None:
        return
    multiple, border, radius = geometry
    what = f"{models.label(config['model'])}, whose output is {2 * border} pixels smaller than its input"
    if 2 * border >= size // scale:
        shrunk = f" (shrunk {scale} times by the task)" if scale != 1 else ""
        raise TesseraError(
            f"patches.size: {size}{shrunk} leaves no output for {what}; use patches larger than "
            f"{2 * border * scale} (or a shallower network, or padding: same)"
        )
    rec = config["reconstruct"]
    if radius is None:
        return
    if rec["margin"] is not None and rec["mode"] != "naive" and rec["margin"] < border:
        raise TesseraError(
            f"reconstruct.margin: {rec['margin']} is less than the output border {border} of "
            f"{what}: tiles would give no output for their edges; use at least {border}"
        )
    if rec["mode"] != "naive":
        # a margin given is checked against the tile with the size multiple (check); with the
        # margin null, a tile too small for the model's reach is widened (reconstruct.plan_for)
        return
    stride = rec["tile"] - 2 * border  # naive tiles lose only the output border
    if stride <= 0 or stride % multiple:
        fits = 2 * border + multiple
        raise TesseraError(
            f"reconstruct.tile: {rec['tile']} leaves no whole centre for {models.label(config['model'])}, "
            f"whose tiles lose {border} pixels on each side (its output border); use a tile of at "
            f"least {fits}" + (f", a multiple of {multiple}" if multiple > 1 else "")
        )


# The [low, high] ranges of a degradation (tessera.tasks.restore).
RANGES = ("quality", "sigma", "factor", "size", "count")


def _check_ranges(task):
    """A range given high first: the fixed draws take its middle, the training's draws would stop
    the job (numpy's low >= high)."""
    if task["kind"] != "restore":
        return
    for k, d in enumerate(task.get("degradations") or []):
        for key in RANGES:
            if key in d and d[key][0] > d[key][1]:
                low, high = d[key][1], d[key][0]
                raise TesseraError(
                    f"task.degradations.{k}.{key}: {d[key]} gives the high end first; write the "
                    f"range low first, [{low}, {high}]"
                )


def validate(config, schema):
    """Check the config against the JSON schema; raise TesseraError for the first bad key.

    Snakemake's own validation prints the whole schema entry; this names the key, the value given
    and the values allowed, on one line. Defaults are filled in afterwards by Snakemake.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise TesseraError(_describe(error, schema))


def _describe(error, schema=None):
    path = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        key = ".".join(path + [extra[0]])
        where = ".".join(path) or "the config"
        return f"{key}: unknown setting; {where} takes: {', '.join(known)}"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance][0]
        # a conditional requirement (if/then) names the key without describing it
        sub = error.schema.get("properties", {}).get(missing) or _described(error, missing, schema)
        said = "description" in sub and sub.get("type") != "array"  # a list's is in _allowed
        what = f" ({sub['description']})" if said else ""
        return f"{'.'.join(path + [missing])}: missing; set it to {_allowed(sub)}{what}"
    key = ".".join(path) or "config"
    given = json.dumps(error.instance, ensure_ascii=False, default=str)
    return f"{key}: {given} is not allowed; use {_allowed(error.schema)}"


def _described(error, key, schema):
    """The schema entry of key in the object whose condition (allOf: if/then) requires it."""
    node, found = schema or {}, {}
    for step in error.absolute_schema_path:
        if step == "allOf":
            break
        node = node[step]
        found = node.get("properties", {}).get(key, found) if isinstance(node, dict) else found
    return found


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _allowed(sub):
    """The values a schema entry allows, in words: 'an integer from 4 to 512', 'one of: a, b'."""
    if "enum" in sub:
        return "one of: " + ", ".join(json.dumps(v) if v is None else str(v) for v in sub["enum"])
    types = sub.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if "object" in types:
        keys = ", ".join(sub.get("properties", {}))
        return f"a mapping of: {keys}" if keys else "a mapping"
    if "array" in types:
        return "a list" + (f" {sub['description']}" if "description" in sub else "")
    words = [_TYPE_WORDS[t] for t in types if t != "null"]
    text = " or ".join(words) or "a value"
    if "minimum" in sub and "maximum" in sub:
        bounds = [f"from {sub['minimum']} to {sub['maximum']}"]
    else:
        words = (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        )
        bounds = [f"{w} {sub[k]}" for k, w in words if k in sub]
    if sub.get("minLength"):
        text = "a non-empty " + text.removeprefix("a ")
    text = " ".join([text, " and ".join(bounds)]) if bounds else text
    return text + (", or null" if "null" in types else "")


def load_schema(path):
    with open(path) as f:
        return yaml.safe_load(f)


# The sections a variant may change; the rest (images, results, split, report) is shared.
VARIANT_SECTIONS = ("patches", "model", "task", "train", "reconstruct")
# Folder names under results/ that a variant cannot take.
RESERVED_NAMES = ("shared", "compare", "applied", "model", "report")
# A variant's name is its folder under results/: one path component, no hidden name (the
# schema's variants: propertyNames pattern is this one).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._~=+-]*$"
NAME_CHARACTERS = "letters, digits and . _ ~ = + - (not first)"


def name_problem(name):
    """Why a variant's name cannot be its folder under results/, or None."""
    import re

    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        return f"not one folder name ({NAME_CHARACTERS})"
    if ".." in name:
        return "not one folder name (no '..')"
    if len(name.encode()) > 255:
        return f"{len(name.encode())} bytes long, over the 255 a folder name may take"
    if name in RESERVED_NAMES:
        return "a folder name tessera uses"
    return None


def variant_configs(config, schema, overrides, mem_mb=None):
    """The whole configuration of each variant: the base config with the variant's overrides of
    VARIANT_SECTIONS merged in, checked as the base config is (errors name the variant)."""
    import copy

    base = {k: v for k, v in config.items() if k not in ("variants", "grid")}
    if overrides:
        check(base, mem_mb)  # the settings every variant shares are named as themselves
    out = {}
    for name, override in overrides.items():
        where = f"variants.{name}"
        if problem := name_problem(name):
            raise TesseraError(f"{where}: '{name}' is {problem}; rename the variant")
        merged = copy.deepcopy(base)
        for section, values in (override or {}).items():
            if section not in VARIANT_SECTIONS:
                raise TesseraError(
                    f"{where}.{section}: a variant may change only {', '.join(VARIANT_SECTIONS)}"
                )
            start = merged[section]
            if section == "model" and {"preset", "file"} & set(values or {}):
                # another network: the base's arguments and starting weights are another network's
                start = {}
            merged[section] = {**start, **(values or {})}
        try:
            validate(merged, schema)
            check(merged, mem_mb)
        except TesseraError as e:
            raise TesseraError(f"{where}.{e}") from None
        out[name] = merged
    return out


def grid_labels(grid):
    """The values of each grid key as they go into the variants' names: a model file by its stem
    (nets/tiny.py names its variant model_file~tiny), every other value as it is."""
    from pathlib import PurePath

    def label(key, value):
        return PurePath(value).stem if key == "model.file" and isinstance(value, str) else value

    return {key: [label(key, v) for v in values] for key, values in grid.items()}


def grid_overrides(grid, names):
    """Overrides for each point of a grid over dotted keys ({"train.learning_rate": [..]}), named
    by the given names (one per point, in the order of itertools.product over the keys, made from
    grid_labels). A name that cannot be a folder under results/, or that two points share, stops
    with one line naming the grid key."""
    import itertools

    for key in grid:
        section, _, setting = key.partition(".")
        if section not in VARIANT_SECTIONS or not setting:
            raise TesseraError(
                f"grid.{key}: name a setting as section.key, the section one of "
                f"{', '.join(VARIANT_SECTIONS)}"
            )
    names, points = list(names), list(itertools.product(*grid.values()))
    labels = list(itertools.product(*grid_labels(grid).values()))
    for name, point, label in zip(names, points, labels):
        if problem := name_problem(name):
            # the key whose value does not fit in a name, else the first
            odd = [k for k, v in zip(grid, label) if name_problem(f"x{v}")] or list(grid)
            value = point[list(grid).index(odd[0])]
            raise TesseraError(
                f"grid.{odd[0]}: {value!r} makes the variant name {name!r}, which is {problem}; "
                "give such variants their names under variants: instead"
            )
    seen = {}
    for name, point in zip(names, points):
        if name in seen:
            differ = [(k, x, y) for k, x, y in zip(grid, seen[name], point) if x != y]
            if not differ:
                twice = (k for k, vs in grid.items() if len(vs) > len(set(map(repr, vs))))
                key = next(twice, next(iter(grid)))
                raise TesseraError(f"grid.{key}: a value is listed twice; list each once")
            key, a, b = differ[0]
            raise TesseraError(
                f"grid.{key}: {a!r} and {b!r} both make the variant name {name!r}; give "
                "such variants their names under variants: instead"
            )
        seen[name] = point
    out = {}
    for name, point in zip(names, points):
        override = {}
        for key, value in zip(grid, point):
            section, _, setting = key.partition(".")
            override.setdefault(section, {})[setting] = value
        out[name] = override
    return out


def key_of(*parts):
    """A short, stable name for a combination of settings (a folder name for shared outputs)."""
    import hashlib

    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
