"""Configuration checks that need more than the JSON schema.

The schema (config/config.schema.yaml, applied by snakemake.utils.validate) checks each key alone;
this module reads command-line values in the types the schema asks for, and checks the settings that
must fit together, before any job runs.
"""

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


def load_schema(path):
    with open(path) as f:
        return yaml.safe_load(f)
