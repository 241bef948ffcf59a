"""Resuming training from its backups: damaged backups are passed over, a diverged run leaves
none, and the history always agrees with the backup it resumed from."""

import json

import numpy as np

import pandas as pd
import pytest

from tessera import TesseraError, train
from tests.conftest import DATA, TRAIN_SETTINGS, patch_dataset

SETTINGS = {**TRAIN_SETTINGS, "epochs": 4, "batch_size": 32}


@pytest.fixture
def dataset(tmp_path):
    split_tsv, files = patch_dataset(tmp_path / "patches", max_patches=64)
    return tmp_path, split_tsv, files


def run_training(dataset, settings=SETTINGS, lines=None):
    tmp, split_tsv, files = dataset
    o = tmp / "model"
    log = lines.append if lines is not None else print
    return o, train.train(
        split_tsv, files, o / "model.keras", o / "history.tsv", o / "summary.json",
        tmp / "resume", settings, DATA, log=log,
    )  # fmt: skip


def interrupted(dataset, monkeypatch, after, settings=SETTINGS):
    """Train, and stop the job as a Ctrl-C would once `after` epochs are backed up."""
    save = train._save_state

    def save_then_stop(folder, model, rows, *args):
        save(folder, model, rows, *args)
        if len(rows) == after:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "_save_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_training(dataset, settings)
    monkeypatch.setattr(train, "_save_state", save)
    (folder,) = (dataset[0] / "resume").iterdir()
    return folder


def check_history(out, epochs):
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert list(history.epoch) == list(range(1, epochs + 1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == len(history)
    # the summary's figure is the history's last line, printed and read back (repr round-trips)
    assert summary["final_loss"] == pytest.approx(history.loss.iloc[-1], rel=1e-12)
    return summary


def test_a_run_stopped_after_an_epoch_resumes_from_its_backup(dataset, monkeypatch):
    folder = interrupted(dataset, monkeypatch, after=3)
    # the last two backups are kept, each whole
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-000002", "epoch-000003"]
    lines = []
    out, _ = run_training(dataset, lines=lines)
    assert any("resuming after epoch 3" in line for line in lines), lines
    assert check_history(out, 4)["resumed_from_epoch"] == 3
    assert not any((dataset[0] / "resume").iterdir())


def test_a_truncated_state_falls_back_to_the_previous_backup(dataset, monkeypatch):
    folder = interrupted(dataset, monkeypatch, after=3)
    state = folder / "epoch-000003" / "state.json"
    state.write_bytes(state.read_bytes()[:5])  # a kill or a full disk mid-write
    lines = []
    out, _ = run_training(dataset, lines=lines)
    warning = [line for line in lines if "damaged" in line]
    assert len(warning) == 1 and "resuming after epoch 2 instead" in warning[0], lines
    assert "unreadable state.json" in warning[0]
    assert check_history(out, 4)["resumed_from_epoch"] == 2


def test_damaged_weights_in_every_backup_start_from_scratch(dataset, monkeypatch):
    folder = interrupted(dataset, monkeypatch, after=3)
    (folder / "epoch-000003" / "state.json").write_bytes(b'{"epo')
    weights = folder / "epoch-000002" / "backup.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: h5py would read it without a word
    weights.write_bytes(bytes(data))
    lines = []
    out, _ = run_training(dataset, lines=lines)
    warning = [line for line in lines if "damaged" in line]
    assert len(warning) == 1 and "training starts from scratch" in warning[0], lines
    assert "does not match its checksum" in warning[0]
    assert check_history(out, 4)["resumed_from_epoch"] == 0


def test_a_backup_of_another_model_is_removed_with_one_line(dataset, monkeypatch):
    folder = interrupted(dataset, monkeypatch, after=1)
    other = dict(SETTINGS, preset="seed")
    # the same key, as after an edit of the preset's code: its weights do not fit
    monkeypatch.setattr(train, "resume_key", lambda *a: folder.name)
    with pytest.raises(TesseraError, match="does not fit this model.*run the same command again"):
        run_training(dataset, other)
    assert not folder.exists()


def test_a_diverged_run_leaves_no_backup_to_resume_from(dataset):
    bad = dict(SETTINGS, learning_rate=1e9, optimizer="sgd", epochs=3)
    with pytest.raises(TesseraError, match="learning_rate"):
        run_training(dataset, bad)
    resume = dataset[0] / "resume"
    assert not resume.exists() or not any(resume.iterdir())


def trained_weights(out):
    import keras

    return [np.asarray(w) for w in keras.saving.load_model(out / "model.keras").weights]


# Resumed and uninterrupted runs make the same steps on the same batches in the same process, so
# the only differences left are a multi-threaded kernel's order of summation, a few units in
# float32's last place per step: 1e-4 of a weight's scale after a few dozen steps is far above
# that drift and far below what one step of another batch, or a learning rate restarted from its
# start, changes (about 1e-2 here).
WEIGHT_RTOL = 1e-4


@pytest.mark.parametrize(
    "recipe",
    [
        {"schedule": "cosine", "warmup": 3},
        {"optimizer": "adamw", "ema": 0.9, "keep": "best", "loss": "charbonnier"},
    ],
    ids=["cosine-warmup", "adamw-ema-best"],
)
def test_a_resumed_run_ends_as_a_run_never_interrupted(dataset, monkeypatch, tmp_path, recipe):
    settings = {**SETTINGS, "epochs": 3, **recipe}
    # the run never interrupted, in a folder of its own
    whole_out, whole = run_training((tmp_path / "whole", *dataset[1:]), settings)
    folder = interrupted(dataset, monkeypatch, after=1, settings=settings)
    state = json.loads((folder / "epoch-000001" / "state.json").read_text())
    assert state["seconds"] > 0 and state["best_epoch"] == 1
    out, resumed = run_training(dataset, settings)
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["train_s"] >= state["seconds"]  # the budget spent before the kill counts
    a = pd.read_csv(whole_out / "history.tsv", sep="\t")
    b = pd.read_csv(out / "history.tsv", sep="\t")
    assert np.allclose(a[["loss", "val_loss"]], b[["loss", "val_loss"]], rtol=1e-4, atol=0)
    assert resumed["kept_epoch"] == whole["kept_epoch"]
    for x, y in zip(trained_weights(whole_out), trained_weights(out)):
        assert np.allclose(x, y, rtol=WEIGHT_RTOL, atol=WEIGHT_RTOL * np.abs(x).max())


def test_a_resume_restores_every_weight_and_the_optimizers_state(dataset, monkeypatch):
    import keras

    settings = {**SETTINGS, "epochs": 3, "ema": 0.9}
    folder = interrupted(dataset, monkeypatch, after=2, settings=settings)
    backup = folder / "epoch-000002" / train.WEIGHTS
    restored = {}
    begin = train.Backup.on_train_begin

    def look(self, logs=None):
        begin(self, logs)
        restored["model"] = [np.asarray(v) for v in self.model.weights]
        restored["optimizer"] = [np.asarray(v) for v in self.model.optimizer.variables]

    monkeypatch.setattr(train.Backup, "on_train_begin", look)
    run_training(dataset, settings)
    # the backup's own values, read from the file with h5py: the model's variables and the
    # optimizer's (its step count, Adam's moments, the moving averages), each by its path
    import h5py

    with h5py.File(backup, "r") as f:
        saved = {}
        f.visititems(lambda k, v: saved.update({k: v[()]}) if isinstance(v, h5py.Dataset) else None)
    steps = [v for k, v in saved.items() if k.startswith("optimizer") and np.ndim(v) == 0]
    assert restored["optimizer"][0] == steps[0] > 0  # a backup that loaded nothing starts at 0
    kernels = [v for k, v in saved.items() if not k.startswith("optimizer") and v.ndim == 4]
    ours = [a for a in restored["model"] if a.ndim == 4]
    assert len(ours) == len(kernels)
    assert all(any(np.array_equal(a, s) for s in kernels) for a in ours)
    moments = [v for k, v in saved.items() if k.startswith("optimizer") and np.ndim(v) == 4]
    theirs = [a for a in restored["optimizer"] if a.ndim == 4]
    assert len(theirs) == len(moments) == 3 * len(kernels)  # two moments and an average each
    assert all(any(np.array_equal(a, s) for s in moments) for a in theirs)
