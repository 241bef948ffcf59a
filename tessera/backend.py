"""What the Keras backend runs on, and keeping it to a job's share of the machine."""

import os

import numpy as np


def name():
    import keras

    return keras.config.backend()


def configure(threads):
    """Limit the framework to the job's threads, so parallel jobs do not oversubscribe the cores."""
    if name() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        except RuntimeError:  # already running in this process (a test calling twice): keep it
            pass
    elif name() == "torch":
        import torch

        torch.set_num_threads(threads)


def devices(kind=None):
    """Devices the backend can use, as "cpu:0"-style names; kind "gpu" or "cpu" filters them."""
    import keras

    try:
        found = [str(d).lower() for d in keras.distribution.list_devices()]
    except Exception:  # not every backend lists devices; the model then runs on its default one
        found = ["cpu:0"]
    if name() == "tensorflow":
        # keras lists one kind only (GPUs when there are any); ask TensorFlow for the other
        import tensorflow as tf

        found = [
            f"{d.device_type.lower()}:{d.name.split(':')[-1]}"
            for d in tf.config.list_logical_devices()
            if d.device_type in ("CPU", "GPU")
        ]
    found = [d.replace("cuda", "gpu") for d in found]
    return [d for d in found if kind is None or d.startswith(kind)]


def copies(variable):
    """On how many devices a Keras variable is held (data-parallel training keeps one copy on
    each)."""
    value = variable.value
    if hasattr(value, "sharding"):  # jax
        return len(value.sharding.device_set)
    if isinstance(getattr(value, "values", None), (tuple, list)):  # a TF MirroredVariable
        return len(value.values)
    return 1


def describe():
    """One line for the log: the backend, the devices it sees, and what the scheduler gave the job."""
    return (
        f"backend {name()}, devices {devices()}, "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}"
    )


def versions():
    import keras
    import PIL

    out = {"keras": keras.__version__, "numpy": np.__version__, "pillow": PIL.__version__}
    try:
        out[name()] = __import__(name()).__version__
    except ImportError:
        pass
    return out
