import json

import numpy as np
import pandas as pd
import pytest

from tessera import backend, train
from tessera.batches import Batches, augment
from tests.conftest import sample


def test_augmentation_moves_input_and_target_together():
    # Input and target stacked on the channel axis go through one call: if they were transformed
    # independently (the blog post's bug), the halves would stop matching.
    rng = np.random.default_rng(0)
    patches = np.stack([sample("astronaut.png", (x, 50, x + 16, 66)) for x in range(0, 320, 10)])
    pair = np.concatenate([patches, patches[..., ::-1]], axis=3)
    out = augment(pair, rng)
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
    data = Batches(patches, 4, seed=0, augment_on=True)
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


DENOISE = {"kind": "denoise", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0}


def test_denoise_batches_put_noise_on_the_input_only_and_fresh_each_epoch():
    patches = np.stack([sample("coffee.png", (x, 100, x + 16, 116)) for x in range(0, 320, 20)])
    data = Batches(patches, 8, seed=0, augment_on=False, task=DENOISE)
    x, y = data[0]
    clean = patches[np.sort(data.order[:8])].astype(np.float32) / 255
    assert np.array_equal(y, clean)
    residual = (x - y) * 255
    assert 20 < residual.std() < 27  # sigma 25, a little less where clipping at 0 and 255 bites
    data.on_epoch_end()
    x2, y2 = data[0]
    same = np.sort(data.order[:8])
    assert not np.array_equal(x2 - y2, x - y)  # new noise every epoch
    assert y2.shape == y.shape and np.isin(same, np.arange(len(patches))).all()


def test_salt_and_pepper_hits_the_rate():
    from tessera import noise

    clean = np.full((200, 200, 3), 128, np.uint8)
    task = dict(DENOISE, noise="salt_pepper", rate=0.1)
    noisy = noise.add(clean, task, np.random.default_rng(0))
    hit = (noisy != 128).any(axis=2)
    assert 0.09 < hit.mean() < 0.11
    assert set(np.unique(noisy[hit])) == {0, 255}


def test_fixed_noise_is_the_same_everywhere_it_is_drawn():
    from tessera import noise

    image = sample("chelsea.png", (0, 0, 64, 64))
    a = noise.fixed(image, DENOISE, "chelsea.png")
    assert np.array_equal(a, noise.fixed(image, DENOISE, "chelsea.png"))
    assert not np.array_equal(a, noise.fixed(image, DENOISE, "other.png"))
    assert not np.array_equal(a, noise.fixed(image, dict(DENOISE, seed=1), "chelsea.png"))


def test_denoise_training_beats_the_noisy_input(dataset):
    out = dataset / "model"
    settings = dict(SETTINGS, preset="dncnn", epochs=6, batch_size=8, schedule="cosine")
    summary = train.train(
        dataset / "train.npy", dataset / "val.npy", out / "model.keras", out / "history.tsv",
        out / "summary.json", dataset / "resume", settings, task=DENOISE,
    )  # fmt: skip
    assert summary["task"]["kind"] == "denoise"
    assert summary["val_loss_model"] < summary["val_loss_noisy_input"]
    assert not any("noisy input" in f for f in summary["flags"])


def test_a_flat_output_is_flagged():
    import keras

    class Flat(keras.Model):
        def call(self, x):
            return x * 0 + 0.5

    val = np.stack([sample("astronaut.png", (x, 0, x + 16, 16)) for x in range(0, 320, 16)])
    x = val.astype(np.float32) / 255
    figures, flags = train.quality_flags(Flat(), [(x, x)], "mse", {"kind": "reconstruct"})
    assert figures["val_contrast_ratio"] < 0.01
    assert any(f.startswith("collapsed") for f in flags)


def test_predicting_each_patchs_mean_colour_is_flagged_and_doing_better_is_not():
    import keras

    class MeanColour(keras.Model):
        def call(self, x):
            return x * 0 + keras.ops.mean(x, axis=(1, 2), keepdims=True)

    class Sharper(keras.Model):  # halfway between the mean colour and the truth
        def call(self, x):
            return 0.5 * x + 0.5 * keras.ops.mean(x, axis=(1, 2), keepdims=True)

    val = np.stack([sample("astronaut.png", (x, 0, x + 16, 16)) for x in range(0, 320, 16)])
    x = val.astype(np.float32) / 255
    task = {"kind": "reconstruct"}
    # in two batches, as training gives them
    batches = [(x[:7], x[:7]), (x[7:], x[7:])]
    figures, flags = train.quality_flags(MeanColour(), batches, "mse", task)
    assert figures["val_loss_model"] == pytest.approx(figures["val_loss_mean_colour"], rel=1e-4)
    assert any("own mean colour" in f for f in flags)
    figures, flags = train.quality_flags(Sharper(), batches, "mse", task)
    assert figures["val_loss_model"] == pytest.approx(figures["val_loss_mean_colour"] / 4, rel=1e-3)
    assert not flags


@pytest.mark.parametrize(
    "gpu, flags, chosen",
    [
        (None, ["avx2", "avx512f", "avx512_bf16"], "mixed_bfloat16"),
        (None, ["avx2", "amx_bf16"], "mixed_bfloat16"),
        (None, ["avx2", "avx512f"], "float32"),  # AVX-512 without its bfloat16 instructions
        (None, ["avx2"], "float32"),
        (None, [], "float32"),  # not an x86 CPU, or no /proc
        ((9, 0), [], "mixed_bfloat16"),  # H100 / H200
        ((8, 0), ["avx2"], "mixed_bfloat16"),  # A100: the GPU decides, not the host CPU
        ((7, 5), ["avx512_bf16"], "float32"),  # T4
    ],
)
def test_auto_precision_uses_bfloat16_only_where_the_hardware_has_it(gpu, flags, chosen):
    policy, why = backend.choose_precision("auto", gpu, flags)
    assert policy == chosen and why.startswith("auto: ")
    assert backend.choose_precision("float32", gpu, flags) == ("float32", "set by train.precision")


def test_the_cpu_is_described_by_model_and_vector_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 fma avx512f\n"
    )
    assert backend.cpu(info) == {"model": "AMD EPYC 7B13", "flags": ["avx2", "avx512f"]}


def test_require_gpu_stops_with_one_line_when_there_is_none(monkeypatch):
    from tessera import TesseraError

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    lines = []
    train.check_gpu({"require_gpu": False}, lines.append)
    assert any("CUDA_VISIBLE_DEVICES" in line for line in lines)
    assert any(line.startswith("warning:") and "cannot use" in line for line in lines)
    with pytest.raises(TesseraError, match="require_gpu"):
        train.check_gpu({"require_gpu": True}, lines.append)
