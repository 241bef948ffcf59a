"""What the Keras backend runs on, and keeping it to a job's share of the machine."""

import os

import numpy as np


def configure(threads):
    """Limit the framework to the job's threads, so parallel jobs do not oversubscribe the cores."""
    import keras

    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        except (
            RuntimeError
        ):  # already running in this process (a test calling twice): keep its setting
            pass


def devices():
    import keras

    try:
        return [str(d) for d in keras.distribution.list_devices()]
    except Exception:  # not every backend lists devices; the model then runs on its default one
        return ["cpu"]


def describe():
    """One line for the log: the backend, the devices it sees, and what the scheduler gave the job."""
    import keras

    return (
        f"backend {keras.config.backend()}, devices {devices()}, "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}"
    )


def versions():
    import keras
    import PIL

    out = {"keras": keras.__version__, "numpy": np.__version__, "pillow": PIL.__version__}
    backend = keras.config.backend()
    try:
        out[backend] = __import__(backend).__version__
    except ImportError:
        pass
    return out
