"""The GPU install pins what the CPU install pins."""

import re

import yaml

from tests.conftest import REPO

CPU_FILES = ("requirements.txt", "requirements-backends.txt", "requirements-slurm.txt")


def pins(lines):
    """{package: version} of `name[extras]==version` lines; extras are left out of the name, so
    jax[cpu] and jax[cuda12] are the same package."""
    found = {}
    for line in lines:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if m:
            found[m.group(1).lower().replace("_", "-")] = m.group(3)
    return found


def file_pins(name):
    return pins((REPO / name).read_text().splitlines())


def test_the_gpu_requirements_pin_the_cpu_versions_of_every_shared_package():
    gpu = file_pins("requirements-gpu.txt")
    assert gpu["jax"] == "0.10.2" and "tensorflow-cpu" not in gpu
    assert "[cuda12]" in (REPO / "requirements-gpu.txt").read_text()
    shared = 0
    for name in CPU_FILES:
        for package, version in file_pins(name).items():
            if package in gpu:
                shared += 1
                assert gpu[package] == version, f"{package}: {name} {version}, gpu {gpu[package]}"
    # TensorFlow's ONNX converter is for the TensorFlow backend: the GPU build (JAX) exports
    # from a CPU install (docs/use-anywhere.md)
    workflow = set(file_pins("requirements.txt")) - {"tensorflow-cpu", "tf2onnx", "onnx"}
    assert workflow <= set(gpu), f"missing from requirements-gpu.txt: {workflow - set(gpu)}"
    assert shared >= len(workflow)


def test_the_gpu_conda_environment_pins_what_the_gpu_requirements_pin():
    env = yaml.safe_load((REPO / "envs" / "tessera-gpu.yaml").read_text())
    [pip] = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pins(pip) == file_pins("requirements-gpu.txt")
    assert env["variables"]["KERAS_BACKEND"] == "jax"
    cpu = yaml.safe_load((REPO / "envs" / "tessera.yaml").read_text())
    assert [d for d in cpu["dependencies"] if isinstance(d, str)] == [
        d for d in env["dependencies"] if isinstance(d, str)
    ]


def test_the_backends_claimed_are_the_backends_the_tests_install():
    # PyTorch is not installed where the tests run (its CPU build and tests under it would add
    # about 1.5 minutes to CI), so no requirements file offers it
    from tessera import backend
    from tests.unit.test_backends import BACKENDS

    installed = file_pins("requirements-test.txt") | file_pins("requirements-backends.txt")
    installed |= file_pins("requirements.txt")
    assert "torch" not in installed and set(BACKENDS) == set(backend.TESTED)
    assert {"jax", "tensorflow-cpu"} <= set(installed)
