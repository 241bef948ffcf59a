"""Loading a trained network: the weights of a .keras archive into the network its summary.json
names, never the archive's own config (which could run code)."""

from tessera import TesseraError
from tessera.models.registry import build

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def refuse_hdf5(model_path):
    """Stop with one line if model_path is an HDF5 (.h5) model, whatever its name."""
    try:
        with open(model_path, "rb") as f:
            head = f.read(len(HDF5_SIGNATURE))
    except OSError:
        return  # the caller's own checks name a missing or unreadable file
    if head == HDF5_SIGNATURE:
        raise TesseraError(
            f"model '{model_path}' is an HDF5 (.h5) file: Tessera reads only the .keras files "
            "its training writes (HDF5 model files can carry code that runs when they are loaded)"
        )


def refuse_unnamed_file(model_path, summary, model_file):
    """Stop with one line if the summary's network is built by a Python file and the caller named
    none: building it would run code that came with the model."""
    spec = summary.get("model")
    if isinstance(spec, dict) and "file" in spec and model_file is None:
        raise TesseraError(
            f"model '{model_path}': its network is built by a Python file ('{spec['file']}', "
            "says its summary), and building it runs that file's code; if you trust that code, "
            "name the file (tessera apply --model-file PATH, or apply.model_file in the config)"
        )


def load_trained(model_path, summary, model_file=None):
    """The trained network: built from summary.json (its "model" spec, else the preset name of
    older summaries) under the precision it trained with, then given the weights of the .keras
    archive at model_path.

    Only the archive's weights are read (Keras' load_weights on a .keras file opens
    model.weights.h5 and never deserialises the archive's config.json), so a crafted config cannot
    run code, and a preset's arguments are checked as a config's are. A network from a Python file
    runs that file's code: the summary's file is never run, only model_file, the file the caller
    names (as Keras' safe_mode=False), and only if its code is the code the model was trained
    with (the summary's hash of it).
    """
    import keras

    refuse_hdf5(model_path)
    if not str(model_path).endswith(".keras"):
        raise TesseraError(f"model '{model_path}' is not a .keras file (its name must end .keras)")
    spec = summary.get("model") or summary.get("preset")
    if not spec:
        raise TesseraError(
            f"the summary of model '{model_path}' names no network ('model' or 'preset')"
        )
    refuse_unnamed_file(model_path, summary, model_file)
    if isinstance(spec, dict) and "file" in spec:
        spec = {**spec, "file": str(model_file)}
    # A model trained in mixed_bfloat16 computes in bfloat16 when loaded whole; build it so.
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(summary.get("precision") or "float32")
    try:
        net = build(spec)
    except TesseraError as e:
        raise TesseraError(f"the summary of model '{model_path}': {e}") from None
    finally:
        keras.config.set_dtype_policy(before)
    try:
        net.load_weights(model_path)
    except Exception as e:
        # Keras' message goes on with every value of the first mismatched variable
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". Example")[0]
        raise TesseraError(
            f"model '{model_path}': its weights do not fit the network its summary names "
            f"({spec!r}): {first[:300]}"
        ) from None
    return net
