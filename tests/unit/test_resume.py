"""Resuming training from its backups: damaged backups are passed over, a diverged run leaves
none, and the history always agrees with the backup it resumed from."""

import json

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


def interrupted(dataset, monkeypatch, after):
    """Train, and stop the job as a Ctrl-C would once `after` epochs are backed up."""
    save = train._save_state

    def save_then_stop(folder, model, rows, *args):
        save(folder, model, rows, *args)
        if len(rows) == after:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "_save_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_training(dataset)
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
