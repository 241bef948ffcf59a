"""A network of the user's own: a Python file with a function that returns a Keras model, imported,
called and checked as tessera needs it (one image in and out, any size, RGB)."""

from fractions import Fraction
from pathlib import Path

from tessera import TesseraError


def build_file(spec):
    """Import a user's model file and call its function; checked as check_model says. A file
    whose code changed since spec["hash"] was taken is refused: its weights would not fit."""
    import importlib.util

    from tessera import codeversion

    path, function = Path(spec["file"]), spec.get("function") or "build"
    if not path.is_file():
        raise TesseraError(f"model.file: {path}: no such file")
    now = codeversion.file_hash(path)
    if spec.get("hash") and spec["hash"] != now:
        raise TesseraError(
            f"model.file: {path} has changed since the model was trained (code hash "
            f"{spec['hash']}, now {now}); restore it or train again"
        )
    where = f"{path}:{function}"
    module_spec = importlib.util.spec_from_file_location(f"tessera_model_{now}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's code: any error is theirs to see, in one line
        raise TesseraError(f"model.file: {path} fails to import: {type(e).__name__}: {e}") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise TesseraError(f"model.function: {path} has no function '{function}'")
    try:
        model = fn(**(spec.get("args") or {}))
    except Exception as e:
        raise TesseraError(
            f"model.args: {where}(**{spec.get('args') or {}}) failed: " f"{type(e).__name__}: {e}"
        ) from None
    check_model(model, where)
    return model


def check_model(model, where, sizes=(64, 128, 192)):
    """One line for each way a built model cannot be trained and tiled by tessera: not a Keras
    model, not one image in and one out, a fixed input size, other than 3 channels in and out, or
    an output whose side is neither a fixed multiple of the input's nor the input's less a fixed
    border (tried at a few sizes, multiples of 64 so that down-sampling divides them)."""
    import keras

    if not isinstance(model, keras.Model):
        raise TesseraError(
            f"model.file: {where} returned {type(model).__name__}, not a keras.Model"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TesseraError(
            f"model.file: {where} has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; tessera needs one image in and one out"
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] is not None or shape[2] is not None:
        raise TesseraError(
            f"model.file: {where} takes inputs of fixed shape {shape[1:]}; use "
            "keras.Input((None, None, 3)) so that it takes tiles and whole images of any size"
        )
    if shape[3] != 3:
        raise TesseraError(f"model.file: {where} takes {shape[3]} channels; tessera gives 3 (RGB)")
    outs = []
    for s in sizes:
        try:
            out = tuple(model.compute_output_shape((1, s, s, 3)))
        except Exception as e:
            raise TesseraError(
                f"model.file: {where} cannot take a {s}x{s} input: {type(e).__name__}: {e}"
            ) from None
        if len(out) != 4 or out[3] != 3:
            raise TesseraError(
                f"model.file: {where} gives outputs of shape {out[1:]}; "
                "tessera needs 3 channels (RGB)"
            )
        if out[1] != out[2] or out[1] is None:
            raise TesseraError(
                f"model.file: {where} gives a {out[1]}x{out[2]} output for a "
                f"{s}x{s} input; it must keep square tiles square"
            )
        outs.append(out[1])
    ratios = {Fraction(o, s) for o, s in zip(outs, sizes)}
    borders = {s - o for o, s in zip(outs, sizes)}
    if len(ratios) > 1 and len(borders) > 1:
        shown = ", ".join(f"{s} -> {o}" for s, o in zip(sizes, outs))
        raise TesseraError(
            f"model.file: {where} gives outputs ({shown}) that are neither a fixed multiple of "
            "the input's size nor the input's less a fixed border"
        )
