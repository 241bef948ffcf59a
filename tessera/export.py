"""Exporting a trained network for use without Tessera: ONNX, a TensorFlow SavedModel or TFLite,
through Keras' own model.export, in float32, with batch, height and width left free.

Which Keras backend exports which format is Keras' to say (keras/src/models/model.py, export,
in Keras 3.15): ONNX through tf2onnx on TensorFlow and through jax2onnx on JAX; a SavedModel on
TensorFlow, or on JAX through jax2tf (TensorFlow installed beside it); TFLite (LiteRT) on
TensorFlow only with free sizes. On PyTorch, Keras' ONNX and TFLite exports fix the sizes and
its SavedModel goes through torch_xla, so Tessera exports from TensorFlow or JAX only.
"""

import contextlib
import importlib.util
import logging
import os
import re
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from tessera import TesseraError
from tessera.files import atomic

INPUT_NAME = "image"  # the exported graph's input: float32 (batch, height, width, 3), 0..1


@dataclass(frozen=True)
class Format:
    keras_name: str  # model.export's format
    suffix: str  # what the output's name ends with ("" for a folder)
    backends: dict  # Keras backend -> the packages it needs for this format


FORMATS = {
    "onnx": Format("onnx", ".onnx", {"tensorflow": ("tf2onnx", "onnx"), "jax": ("jax2onnx",)}),
    "savedmodel": Format("tf_saved_model", "", {"tensorflow": (), "jax": ("tensorflow",)}),
    "tflite": Format("litert", ".tflite", {"tensorflow": ()}),
}


def format_for(out, fmt=None):
    """The format to write out in: fmt, or the one its name says (.onnx, .tflite); refuses a name
    that does not fit the format (Keras' TFLite export needs .tflite, a SavedModel is a folder)."""
    out = Path(out)
    by_suffix = {f.suffix: name for name, f in FORMATS.items() if f.suffix}
    if fmt is None:
        if out.suffix not in by_suffix:
            raise TesseraError(
                f"export '{out}': say which format (--format {'|'.join(FORMATS)}); the name ends "
                f"neither {' nor '.join(by_suffix)}"
            )
        return by_suffix[out.suffix]
    if fmt not in FORMATS:
        raise TesseraError(f"export format '{fmt}' is not one of: {', '.join(FORMATS)}")
    wanted = FORMATS[fmt].suffix
    if wanted and out.suffix != wanted:
        raise TesseraError(f"export '{out}': a {fmt} file's name must end {wanted}")
    if not wanted and out.suffix in by_suffix:
        raise TesseraError(
            f"export '{out}': a SavedModel is a folder; its name must not end {out.suffix}"
        )
    return fmt


def check_output(out, overwrite=False):
    """Refuse to replace an existing export unless overwrite, before Keras starts."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise TesseraError(f"export '{out}' already exists: choose another name, or --overwrite")
    if out.parent.exists() and not out.parent.is_dir():
        raise TesseraError(f"export '{out}': '{out.parent}' is a file, not a folder")


def check_backend(fmt, backend):
    """One line saying what is missing when the Keras backend cannot export fmt."""
    needs = FORMATS[fmt].backends
    if backend not in needs:
        able = " or ".join(needs)
        raise TesseraError(
            f"export to {fmt} needs the {able} Keras backend (this one is {backend}): run with "
            f"KERAS_BACKEND={next(iter(needs))}"
        )
    missing = [p for p in needs[backend] if importlib.util.find_spec(p) is None]
    if missing:
        raise TesseraError(
            f"export to {fmt} on the {backend} backend needs {' and '.join(missing)}: pip install "
            f"{' '.join(missing)} (requirements.txt pins them)"
        )


def tessera_layers(network):
    """The layers of network that are Tessera's own (registered under the package "tessera")."""
    import keras

    found, todo = [], list(network.layers)
    while todo:
        layer = todo.pop(0)
        if keras.saving.get_registered_name(type(layer)).startswith("tessera>"):
            found.append(layer)
        todo.extend(getattr(layer, "layers", []))
    return found


def export(network, out, fmt=None, overwrite=False):
    """Write network (a float32 Keras model of RGB images) to out in fmt, atomically: a failed
    export leaves nothing under out's name. Returns out as a Path."""
    import keras

    out = Path(out)
    fmt = format_for(out, fmt)
    check_output(out, overwrite)
    check_backend(fmt, keras.config.backend())
    if network.dtype_policy.name != "float32":
        raise TesseraError(
            f"export: the network computes in {network.dtype_policy.name}; Keras exports float32 "
            "networks only (tessera.api.load(..., precision='float32') builds one)"
        )
    spec = keras.InputSpec(shape=(None, None, None, 3), dtype="float32", name=INPUT_NAME)
    kind = FORMATS[fmt].keras_name
    with _tf2onnx_log() as log:
        try:
            with _written(out, fmt) as tmp:
                network.export(str(tmp), format=kind, verbose=False, input_signature=[spec])
                if fmt == "onnx":
                    _check_onnx(tmp, network, log)
        except TesseraError:
            raise
        except Exception as e:
            raise TesseraError(_failure(fmt, network, e)) from e
    return out


@contextlib.contextmanager
def _written(out, fmt):
    """A temporary name to export to, renamed to out when the export ends well: a file through
    tessera.files.atomic, a folder (a SavedModel) by the same rename in its parent."""
    if FORMATS[fmt].suffix:
        with atomic(out) as tmp:
            yield tmp
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        yield tmp
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        for leftover in (tmp, old):
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def _tf2onnx_log():
    """tf2onnx's messages, held back from the terminal: its errors name the operations it could
    not convert, which the one line of a failed export names in turn."""
    logger, held = logging.getLogger("tf2onnx"), []

    class Hold(logging.Handler):
        def emit(self, record):
            held.append(record.getMessage())

    handler, level, propagate = Hold(logging.ERROR), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    try:
        yield held
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _check_onnx(path, network, log):
    """tf2onnx writes a graph even with operations it could not convert, which onnxruntime then
    refuses to load: find them, and stop naming the layer they come from."""
    import onnx

    graph = onnx.load(str(path)).graph
    bad = [n for n in graph.node if not onnx.defs.has(n.op_type, n.domain or "")]
    if bad:
        ops = ", ".join(sorted({n.op_type for n in bad}))
        where = _layers_named(network, " ".join(n.name for n in bad))
        raise TesseraError(
            f"export to onnx: {where or 'the network'} uses {ops}, which ONNX has no operation "
            f"for (tf2onnx: {_first(log) or 'unsupported'}); export it as savedmodel or tflite"
        )


def _layers_named(network, text):
    """'layer NAME (CLASS)' for each layer of network that text names (TensorFlow's op names say
    functional_1/NAME_1/Op), or ''."""
    layers, todo = [], list(network.layers)
    while todo:
        layer = todo.pop(0)
        layers.append(layer)
        todo.extend(getattr(layer, "layers", []))
    named = [
        layer
        for layer in layers
        if re.search(rf"(^|[/\s'\"]){re.escape(layer.name)}(_\d+)?([/\s'\":]|$)", text)
    ]
    return ", ".join(f"layer '{x.name}' ({type(x).__name__})" for x in named)


def _failure(fmt, network, error):
    message = _first([str(error)]) or type(error).__name__
    where = _layers_named(network, str(error))
    if not where:
        ours = tessera_layers(network)
        if ours:
            names = ", ".join(f"'{x.name}' ({type(x).__name__})" for x in ours)
            where = f"a network with Tessera's layers {names}"
    return f"export to {fmt} failed{' at ' + where if where else ''}: {message[:300]}"


def _first(lines):
    for line in lines:
        for part in str(line).splitlines():
            if part.strip():
                return " ".join(part.split())
    return ""


def passes(summary, tiling=None):
    """What one pass of the exported graph takes and gives, and how the workflow runs the model
    over an image (tiling: the reconstruct settings it used; the defaults without them), as
    sentences for the export's messages and the model card."""
    from tessera import reconstruct as rec

    tiling = tiling or {}
    multiple, radius = summary["size_multiple"], summary["receptive_radius"]
    border = summary.get("output_border", 0)
    scale = Fraction(str(summary.get("output_scale", 1)))
    tile = tiling.get("tile", 128)
    margin = tiling.get("margin")
    if margin is None:
        margin = rec.default_margin(radius, multiple, border, scale)
    out = []
    if multiple > 1:
        out.append(
            f"Its height and width must be multiples of {multiple} (the network down-samples "
            f"{multiple.bit_length() - 1} times): pad other images, by reflection as Tessera does."
        )
    else:
        out.append("It takes any height and width.")
    if border:
        out.append(f"Its output is {2 * border} pixels smaller than its input in each direction.")
    if scale != 1:
        out.append(f"Its output is {scale} times its input's height and width.")
    out.append(
        f"Tessera runs it tile by tile: tiles of {tile} pixels with a margin of {margin} "
        f"(receptive radius {radius}), stride {tile - 2 * margin}, the image reflect-padded by "
        f"the margin; as the margin covers the radius, this equals one pass over the whole padded "
        f"image up to float rounding, so the exported graph can take a whole image in one pass, or "
        f"tiles cut the same way for a large one."
    )
    if tiling.get("ensemble"):
        out.append(
            "This workflow's results average 8 passes (the flips and quarter turns of the image, "
            "each turned back): the exported graph is one pass."
        )
    return out
