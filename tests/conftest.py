import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "resources" / "sample_images"
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def sample(name, box=None):
    """A real photograph from the shipped samples, as RGB uint8, optionally cropped."""
    im = Image.open(SAMPLES / name).convert("RGB")
    return np.asarray(im.crop(box) if box else im)


# The config of the quick workflow runs: tiny patches and tiles, one epoch.
TINY = {
    "patches": {"size": 16, "stride": 8},
    "split": {"val_fraction": 0.34, "seed": 0},
    "train": {"epochs": 1, "batch_size": 32, "threads": 2},
    "reconstruct": {"tile": 32, "batch_size": 4, "threads": 1},
    "report": {"thumbnail": 64},
}


# The training settings of the unit tests that train: the defaults less the time budget.
TRAIN_SETTINGS = dict(
    preset="compact",
    optimizer="adam",
    learning_rate=0.002,
    loss="mse",
    augment=True,
    seed=0,
    max_minutes=None,
    threads=2,
)


def tiny_config(path, images, **changes):
    """Write the tiny config for an image folder to path; each change replaces keys of a section
    (or sets a top-level value)."""
    config = {"images": str(images), **TINY}
    for key, change in changes.items():
        config[key] = {**config.get(key, {}), **change} if isinstance(change, dict) else change
    path.write_text(yaml.safe_dump(config))
    return path


def tiny_images(folder):
    """Three small crops of real photographs, for quick workflow runs."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, box in (
        ("astronaut.png", (150, 40, 246, 136)),
        ("coffee.png", (200, 100, 312, 180)),
        ("rocket.jpg", (250, 150, 330, 246)),
    ):
        Image.fromarray(sample(name, box)).save(folder / (Path(name).stem + ".png"))
    return folder


def small_photos(folder, side=128):
    """Four whole sample photographs shrunk to `side` pixels: varied enough in colour and texture
    that a model trained on three of them must learn something to rebuild the fourth."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"):
        im = Image.open(SAMPLES / name).convert("RGB")
        im.thumbnail((side, side))
        im.save(folder / (Path(name).stem + ".png"))
    return folder


def patch_dataset(folder, size=16, max_patches=128, sides=None):
    """Per-image patch files of real photographs and the split table naming their sides, as the
    patches and split stages write them; returns (split table path, {image id: patch file})."""
    import pandas as pd

    from tessera.patches import extract

    sides = sides or {"coffee.png": "train", "rocket.jpg": "train", "chelsea.png": "val"}
    folder.mkdir(parents=True, exist_ok=True)
    files, rows = {}, []
    for k, (name, side) in enumerate(sides.items()):
        patches = extract(sample(name), size, size, max_patches=max_patches, seed=k)
        files[name] = folder / f"{name}.npy"
        np.save(files[name], patches)
        rows.append({"image": name, "path": name, "split": side, "patches": len(patches)})
    pd.DataFrame(rows).to_csv(folder / "split.tsv", sep="\t", index=False)
    return folder / "split.tsv", files


DATA = {"size": 16, "stride": 16, "sampling": "grid", "max_val_patches": 64}


def snakemake_command(workdir, *args, snakefile=None):
    """The command line that runs the workflow (the repository's, or the copy at snakefile) in workdir."""
    snakefile = snakefile or REPO / "Snakefile"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir)]
    return cmd + ["--cores", "2", *args]


def snakemake(workdir, *args, check=True, timeout=600, snakefile=None, env=None):
    """Run the real workflow with the repository's Snakefile in workdir; returns the CompletedProcess.
    env: variables to set for this run (a Keras backend, say)."""
    cmd = snakemake_command(workdir, *args, snakefile=snakefile)
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


# Every test of tests/workflow/ and tests/slurm/ runs Snakemake: all of them are slow, so that the
# quick loop (pytest -m "not slow") is the unit tests that neither train for long nor run it.
RUN_SNAKEMAKE = ("workflow", "slurm")
# The files that take longest, longest first (each over 90 s of setup and calls in
# `python -m pytest --durations=0` on 2 cores; docs/benchmarks.md#the-test-suite).
LONGEST_FIRST = (
    "test_rerun.py",
    "test_variants.py",
    "test_gpu_check.py",
    "test_network_runs.py",
    "test_learning_checks.py",
    "test_slurm.py",
    "test_faults.py",
    "test_real_folders.py",
    "test_end_to_end.py",
    "test_package.py",
)


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).parent
    for item in items:
        if any(tests / folder in Path(item.fspath).parents for folder in RUN_SNAKEMAKE):
            item.add_marker(pytest.mark.slow)
    # The files with slow tests first, the longest of them first, the quick ones after: the two
    # workers then end together, on short files, rather than one waiting while the other runs a
    # long file alone (pyproject.toml keeps xdist from reordering files by their test count). A
    # stable sort by file: each file's tests stay together and in order.
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    count = Counter(item.path for item in items)

    def rank(item):
        # then the files with more tests first, as xdist would order them
        name = item.path.name
        longest = LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
        return item.path not in slow, longest, -count[item.path]

    items.sort(key=rank)
