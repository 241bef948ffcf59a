"""Models trained once per test session by the training stage's own function, for the tests of
what a user does with a trained model (tessera.api, tessera.export, the model card)."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import TRAIN_SETTINGS, sample

# Small crops of three photographs: two train, one validates.
CROPS = {
    "coffee.png": ((180, 90, 276, 186), "train"),
    "rocket.png": ((250, 150, 346, 246), "train"),
    "chelsea.png": ((100, 60, 196, 156), "val"),
}
SOURCES = {"rocket.png": "rocket.jpg"}
PATCHES = {"size": 16, "stride": 8, "sampling": "grid", "max_val_patches": 64}
DENOISE = {"kind": "denoise", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0}
HOLES = {
    "kind": "restore",
    "seed": 0,
    "degradations": [{"kind": "holes", "size": [3, 8], "count": [1, 3]}],
}


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """The crops as files, their patch files and the split table, as the patch and split stages
    write them: (folder, split.tsv, {image id: patch file})."""
    from tessera.patches import extract

    folder = tmp_path_factory.mktemp("photos")
    files, rows = {}, []
    for k, (name, (box, side)) in enumerate(CROPS.items()):
        crop = sample(SOURCES.get(name, name), box)
        Image.fromarray(crop).save(folder / name)
        files[name] = folder / f"{name}.npy"
        np.save(files[name], extract(crop, PATCHES["size"], PATCHES["stride"], seed=k))
        rows.append({"image": name, "path": name, "split": side, "patches": 1})
    pd.DataFrame(rows).to_csv(folder / "split.tsv", sep="\t", index=False)
    return folder, folder / "split.tsv", files


def _trained(tmp_path_factory, photos, model, task):
    """A model folder as the training stage writes it: one epoch on the crops' patches."""
    from tessera import train

    _, split_tsv, files = photos
    out = tmp_path_factory.mktemp("model")
    settings = {**TRAIN_SETTINGS, "model": model, "epochs": 1, "batch_size": 32}
    train.train(
        split_tsv, files, out / "model.keras", out / "history.tsv", out / "summary.json",
        out / "resume", settings, PATCHES, task=task,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def compact_model(tmp_path_factory, photos):
    """The default network (two down-samplings: size multiple 4), rebuilding its input."""
    return _trained(tmp_path_factory, photos, {"preset": "compact"}, {"kind": "reconstruct"})


@pytest.fixture(scope="session")
def dncnn_model(tmp_path_factory, photos):
    """A residual denoiser at full resolution (size multiple 1)."""
    return _trained(tmp_path_factory, photos, {"preset": "dncnn"}, DENOISE)


@pytest.fixture(scope="session")
def holes_model(tmp_path_factory, photos):
    """A network told where its holes are: Tessera's own layers (HoleMask, FillHoles,
    KeepKnown) around a compact network."""
    return _trained(tmp_path_factory, photos, {"preset": "compact"}, HOLES)
