"""Configuration checks: the JSON schema with one-line messages, and what it cannot check.

The schema (config/config.schema.yaml) checks each key alone: validate() applies it with a one-line
message naming the key and the values allowed, before snakemake.utils.validate fills in defaults.
This module also reads command-line values in the types the schema asks for, and checks the
settings that must fit together, before any job runs.
"""

import json

import yaml

from tessera import TesseraError, models


def coerce(config, schema):
    """Turn strings from `--config key='{a: 1}'` (which Snakemake reads as text) into the schema's types."""
    if not isinstance(config, dict):
        return config
    for key, sub in schema.get("properties", {}).items():
        if key not in config:
            continue
        value = config[key]
        if isinstance(value, dict):
            coerce(value, sub)
        elif isinstance(value, str):
            types = sub.get("type", [])
            types = [types] if isinstance(types, str) else types
            if set(types) & {"integer", "number", "boolean", "null", "object"}:
                try:
                    parsed = yaml.safe_load(value)
                except yaml.YAMLError:
                    continue
                if not isinstance(parsed, str):
                    config[key] = coerce(parsed, sub) if isinstance(parsed, dict) else parsed
    return config


def check(config):
    """Cross-setting checks: raise TesseraError naming the keys and the values that would work."""
    preset = config["model"]["preset"]
    models.get_preset(preset)
    m = models.declared_size_multiple(preset)
    size = config["patches"]["size"]
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
    "null": "null",
}


def _allowed(sub):
    """The values a schema entry allows, in words: 'an integer from 4 to 512', 'one of: a, b'."""
    if "enum" in sub:
        return "one of: " + ", ".join(json.dumps(v) if v is None else str(v) for v in sub["enum"])
    types = sub.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if "object" in types:
        return f"a mapping of: {', '.join(sub.get('properties', {}))}"
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


def variant_configs(config, schema, overrides):
    """The whole configuration of each variant: the base config with the variant's overrides of
    VARIANT_SECTIONS merged in, checked as the base config is (errors name the variant)."""
    import copy

    base = {k: v for k, v in config.items() if k not in ("variants", "grid")}
    out = {}
    for name, override in overrides.items():
        where = f"variants.{name}"
        if name in RESERVED_NAMES:
            raise TesseraError(
                f"{where}: '{name}' is a folder name tessera uses; rename the variant"
            )
        merged = copy.deepcopy(base)
        for section, values in (override or {}).items():
            if section not in VARIANT_SECTIONS:
                raise TesseraError(
                    f"{where}.{section}: a variant may change only {', '.join(VARIANT_SECTIONS)}"
                )
            merged[section] = {**merged[section], **(values or {})}
        try:
            validate(merged, schema)
            check(merged)
        except TesseraError as e:
            raise TesseraError(f"{where}.{e}") from None
        out[name] = merged
    return out


def grid_overrides(grid, names):
    """Overrides for each point of a grid over dotted keys ({"train.learning_rate": [..]}), named
    by the given names (one per point, in the order of itertools.product over the keys)."""
    import itertools

    for key in grid:
        section, _, setting = key.partition(".")
        if section not in VARIANT_SECTIONS or not setting:
            raise TesseraError(
                f"grid.{key}: name a setting as section.key, the section one of "
                f"{', '.join(VARIANT_SECTIONS)}"
            )
    out = {}
    for name, point in zip(names, itertools.product(*grid.values())):
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
