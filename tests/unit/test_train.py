import json

import numpy as np
import pandas as pd
import pytest

from tessera import backend, train
from tests.conftest import DATA, TRAIN_SETTINGS, patch_dataset, sample

SETTINGS = {**TRAIN_SETTINGS, "epochs": 2, "batch_size": 16}


@pytest.fixture
def dataset(tmp_path):
    split_tsv, files = patch_dataset(tmp_path / "patches")
    return tmp_path, split_tsv, files


def run_training(dataset, settings, task=None, out="model"):
    tmp, split_tsv, files = dataset
    o = tmp / out
    return o, train.train(
        split_tsv, files, o / "model.keras", o / "history.tsv", o / "summary.json",
        tmp / "resume", settings, DATA, task=task,
    )  # fmt: skip


def test_training_writes_model_history_and_summary(dataset):
    out, summary = run_training(dataset, SETTINGS)
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert list(history.columns[:3]) == ["epoch", "loss", "val_loss"]
    assert list(history.epoch) == [1, 2]
    assert history.loss.iloc[-1] < history.loss.iloc[0]
    on_disk = json.loads((out / "summary.json").read_text())
    for key in ("params", "backend", "device", "patches_per_s", "epochs", "wall_s"):
        assert on_disk[key] == summary[key]
    assert on_disk["epochs"] == 2 and on_disk["patches_per_s"] > 0
    resume = dataset[0] / "resume"
    assert not resume.exists() or not any(resume.iterdir())
    assert summary["train_images"] == 2 and summary["val_patches"] <= DATA["max_val_patches"]


def test_diverging_training_stops_with_a_message_naming_the_learning_rate(dataset):
    from tessera import TesseraError

    bad = dict(SETTINGS, learning_rate=1e9, optimizer="sgd", epochs=3)
    with pytest.raises(TesseraError, match="learning_rate"):
        run_training(dataset, bad)


DENOISE = {"kind": "denoise", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0}


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
    settings = dict(SETTINGS, preset="dncnn", epochs=6, batch_size=8, schedule="cosine")
    _, summary = run_training(dataset, settings, task=DENOISE)
    assert summary["task"]["kind"] == "denoise"
    assert summary["val_loss_model"] < summary["val_loss_noisy_input"]
    assert not any("noisy input" in f for f in summary["flags"])


def test_a_flat_output_is_flagged():
    import keras

    class Flat(keras.Model):
        def call(self, x):
            return x * 0 + 0.5

    val = np.stack([sample("astronaut.png", (x, 0, x + 16, 16)) for x in range(0, 320, 16)])
    figures, flags = train.quality_flags(Flat(), val, val, "mse", {"kind": "reconstruct"})
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
    task = {"kind": "reconstruct"}
    figures, flags = train.quality_flags(MeanColour(), val, val, "mse", task)
    assert figures["val_loss_model"] == pytest.approx(figures["val_loss_mean_colour"], rel=1e-4)
    assert any("own mean colour" in f for f in flags)
    figures, flags = train.quality_flags(Sharper(), val, val, "mse", task)
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
