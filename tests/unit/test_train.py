import json

import numpy as np
import pandas as pd
import pytest

from tessera import train
from tests.conftest import sample


def test_augmentation_moves_input_and_target_together():
    # Input and target stacked on the channel axis go through one call: if they were transformed
    # independently (the blog post's bug), the halves would stop matching.
    rng = np.random.default_rng(0)
    patches = np.stack([sample("astronaut.png", (x, 50, x + 16, 66)) for x in range(0, 320, 10)])
    pair = np.concatenate([patches, patches[..., ::-1]], axis=3)
    out = train.augment(pair, rng)
    assert np.array_equal(out[..., :3], out[..., 3:][..., ::-1])
    # and the transforms really vary: all eight appear, and each output is one of its patch's eight
    seen = set()
    for p, o in zip(patches, out[..., :3]):
        variants = [np.rot90(p, k) for k in range(4)] + [np.rot90(p, k)[:, ::-1] for k in range(4)]
        matches = [k for k, v in enumerate(variants) if np.array_equal(v, o)]
        assert matches
        seen.add(matches[0])
    assert len(seen) >= 6


def test_batches_are_float_pairs_in_unit_range():
    patches = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    data = train.make_batches(patches, 4, shuffle_seed=0, augment_on=True)
    assert len(data) == 3
    x, y = data[0]
    assert x.dtype == np.float32 and x.shape == (4, 8, 8, 3) and np.array_equal(x, y)
    assert 0 <= x.min() and x.max() <= 1
    assert data[2][0].shape == (2, 8, 8, 3)


SETTINGS = dict(
    preset="compact",
    epochs=2,
    batch_size=16,
    optimizer="adam",
    learning_rate=0.002,
    loss="mse",
    augment=True,
    seed=0,
    max_minutes=None,
    threads=2,
)


@pytest.fixture
def dataset(tmp_path):
    from tessera.patches import extract

    np.save(tmp_path / "train.npy", extract(sample("coffee.png"), 16, 16, max_patches=128))
    np.save(tmp_path / "val.npy", extract(sample("chelsea.png"), 16, 16, max_patches=32))
    return tmp_path


def test_training_writes_model_history_and_summary(dataset):
    out = dataset / "model"
    summary = train.train(
        dataset / "train.npy", dataset / "val.npy", out / "model.keras", out / "history.tsv",
        out / "summary.json", dataset / "resume", SETTINGS,
    )  # fmt: skip
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert list(history.columns[:3]) == ["epoch", "loss", "val_loss"]
    assert list(history.epoch) == [1, 2]
    assert history.loss.iloc[-1] < history.loss.iloc[0]
    on_disk = json.loads((out / "summary.json").read_text())
    for key in ("params", "backend", "device", "patches_per_s", "epochs", "wall_s"):
        assert on_disk[key] == summary[key]
    assert on_disk["epochs"] == 2 and on_disk["patches_per_s"] > 0
    assert not (dataset / "resume").exists() or not any((dataset / "resume").iterdir())


def test_diverging_training_stops_with_a_message_naming_the_learning_rate(dataset):
    from tessera import TesseraError

    bad = dict(SETTINGS, learning_rate=1e9, optimizer="sgd", epochs=3)
    out = dataset / "model"
    with pytest.raises(TesseraError, match="learning_rate"):
        train.train(
            dataset / "train.npy", dataset / "val.npy", out / "m.keras", out / "h.tsv",
            out / "s.json", dataset / "resume", bad,
        )  # fmt: skip
