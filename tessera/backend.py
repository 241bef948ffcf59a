"""What the Keras backend runs on, and keeping it to a job's share of the machine."""

import contextlib
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


# The backends the tests run under (requirements-test.txt installs them); any other that Keras
# offers (torch) may work, untested.
TESTED = ("tensorflow", "jax")


def describe():
    """One line for the log: the backend, the devices it sees, and what the scheduler gave the job."""
    untested = (
        "" if name() in TESTED else f" (untested: Tessera is tested on {' and '.join(TESTED)})"
    )
    return (
        f"backend {name()}{untested}, devices {devices()}, "
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


# CPU flags that matter for speed: which vector units the kernel libraries can use.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name and which of VECTOR_FLAGS it has (empty where /proc is missing)."""
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"model": model, "flags": [f for f in VECTOR_FLAGS if f in flags]}


def gpu_capability():
    """The first GPU's CUDA compute capability as (major, minor), or None without one."""
    gpus = devices("gpu")
    if not gpus:
        return None
    try:
        if name() == "jax":
            import jax

            cc = jax.devices("gpu")[0].compute_capability
            return tuple(int(p) for p in str(cc).split(".")[:2])
        if name() == "tensorflow":
            import tensorflow as tf

            details = tf.config.experimental.get_device_details(
                tf.config.list_physical_devices("GPU")[0]
            )
            return tuple(details["compute_capability"])
        if name() == "torch":
            import torch

            return tuple(torch.cuda.get_device_capability(0))
    except Exception:  # a GPU that does not say: treat it as one without bfloat16
        return (0, 0)
    return (0, 0)


def choose_precision(requested, gpu_cc, cpu_flags):
    """The Keras dtype policy for train.precision, and why, in words.

    "auto" picks mixed_bfloat16 only where the hardware computes bfloat16 natively: an NVIDIA GPU
    of compute capability 8.0 or more (Ampere and later), or a CPU with AVX512_BF16 or AMX.
    Elsewhere bfloat16 is emulated and several times slower than float32.
    """
    if requested != "auto":
        return requested, "set by train.precision"
    if gpu_cc is not None:
        cc = ".".join(map(str, gpu_cc))
        if gpu_cc >= (8, 0):
            return "mixed_bfloat16", f"auto: the GPU computes bfloat16 natively (capability {cc})"
        return "float32", f"auto: the GPU has no native bfloat16 (capability {cc}, under 8.0)"
    native = [f for f in BFLOAT16_FLAGS if f in cpu_flags]
    if native:
        return "mixed_bfloat16", f"auto: the CPU computes bfloat16 natively ({', '.join(native)})"
    return "float32", "auto: the CPU has no AVX512_BF16 or AMX, so bfloat16 would be emulated"


def precision(requested):
    """choose_precision for this machine and backend."""
    return choose_precision(requested, gpu_capability(), cpu()["flags"])


def gpu_ids():
    """The GPUs of this machine a job may use: those CUDA_VISIBLE_DEVICES lists, else (outside
    SLURM, which sets it for the GPUs it grants) every one nvidia-smi lists, else none."""
    import shutil
    import subprocess

    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip() and g.strip() != "-1"]
    if os.environ.get("SLURM_JOB_ID") or not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def physical_ids(pool):
    """The machine's own number of each GPU of the pool, to name its lock by.

    Inside a SLURM job the GPUs a job sees are often renumbered from 0 (each job of a node sees
    its own GPU as 0), while SLURM_STEP_GPUS or SLURM_JOB_GPUS give the node's numbers, in the same
    order. Outside SLURM the pool's numbers are the machine's.
    """
    for var in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        ids = [g.strip() for g in os.environ.get(var, "").split(",") if g.strip()]
        if len(ids) == len(pool):
            return dict(zip(pool, ids))
    return {gpu: gpu for gpu in pool}


def _lock_folder(lock_dir):
    import socket
    import tempfile

    # the host in the name: a temporary directory shared by several nodes must not mix their GPUs
    folder = lock_dir or os.path.join(
        tempfile.gettempdir(), f"tessera-gpus-{os.getuid()}-{socket.gethostname()}"
    )
    os.makedirs(folder, exist_ok=True)
    return folder


def _try_lock(folder, physical, mode):
    import fcntl

    f = open(os.path.join(folder, f"gpu-{physical}.lock"), "a")
    try:
        fcntl.flock(f, mode | fcntl.LOCK_NB)
        return f
    except OSError:
        f.close()
        return None


@contextlib.contextmanager
def claimed_gpus(count, log=print, lock_dir=None, poll=1.0):
    """Give this job `count` GPUs of its own on a machine where several jobs run at once.

    Snakemake counts GPUs (--resources gpu=N) but does not hand them out: every job sees every
    GPU. Each job takes an exclusive lock per GPU (flock on a file named by the GPU's number on
    the machine, in a folder of its temporary directory; the system drops it when the process
    ends, however it ends), waits while too few are free, and sets CUDA_VISIBLE_DEVICES to the
    ones it holds, before any framework starts. This works inside SLURM too: a local run in an
    allocation of several GPUs shares them out, and jobs SLURM gave GPUs of their own never wait
    for each other, since their locks are named by the node's GPU numbers.
    """
    import fcntl
    import time

    pool = gpu_ids()
    if count < 1 or not pool:
        yield None
        return
    folder, physical = _lock_folder(lock_dir), physical_ids(pool)
    want, held = min(count, len(pool)), {}
    try:
        while True:
            # all or nothing: two jobs each holding part of what they need would wait forever
            for gpu in pool:
                if len(held) == want:
                    break
                f = _try_lock(folder, physical[gpu], fcntl.LOCK_EX)
                if f:
                    held[gpu] = f
            if len(held) == want:
                break
            for f in held.values():
                f.close()
            held = {}
            time.sleep(poll)
        chosen = [g for g in pool if g in held]
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
        log(f"GPU(s) {','.join(chosen)} of {','.join(pool)} given to this job")
        yield chosen
    finally:
        for f in held.values():
            f.close()


@contextlib.contextmanager
def shared_gpu(log=print, lock_dir=None, poll=1.0):
    """Give an inference job (reconstruction, apply) one GPU that it may share with other
    inference jobs but not with a training job, which holds its GPUs alone (claimed_gpus).

    Inference jobs ask Snakemake for no GPU, so many run at once: each takes a shared lock on one
    GPU no training job holds (spread over the free ones by process id), waits while every GPU
    trains, and lets the framework take GPU memory as it needs it instead of all at once, so that
    the jobs on one GPU fit side by side.
    """
    import fcntl
    import time

    pool = gpu_ids()
    if not pool:
        if os.environ.get("SLURM_JOB_ID") and "CUDA_VISIBLE_DEVICES" not in os.environ:
            # SLURM gave this job no GPU: the node's GPUs belong to other jobs
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        yield None
        return
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # jax
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # tensorflow
    folder, physical = _lock_folder(lock_dir), physical_ids(pool)
    start, held = os.getpid() % len(pool), None
    try:
        while held is None:
            for gpu in pool[start:] + pool[:start]:
                f = _try_lock(folder, physical[gpu], fcntl.LOCK_SH)
                if f:
                    held = (gpu, f)
                    break
            else:
                time.sleep(poll)
        os.environ["CUDA_VISIBLE_DEVICES"] = held[0]
        log(f"GPU {held[0]} of {','.join(pool)} shared with other inference jobs")
        yield held[0]
    finally:
        if held:
            held[1].close()
