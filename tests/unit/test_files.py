"""Outputs are written under a temporary name and renamed: never half-written under their own."""

import errno
import os

import numpy as np
import pytest

from tessera import files


def test_a_failed_write_leaves_neither_the_output_nor_its_temporary_file(tmp_path):
    out = tmp_path / "sub" / "table.tsv"
    with pytest.raises(RuntimeError):
        with files.atomic(out) as tmp:
            tmp.write_text("half a tab")
            raise RuntimeError("killed")
    assert list((tmp_path / "sub").iterdir()) == []


def test_an_old_output_stays_whole_until_the_new_one_is_complete(tmp_path):
    out = tmp_path / "a.json"
    files.write_json(out, {"old": 1})
    with pytest.raises(OSError) as caught:
        with files.atomic(out) as tmp:
            tmp.write_text("{")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert out.read_text() == '{\n "old": 1\n}\n'
    # the error names the output, not the temporary file
    assert caught.value.filename == str(out)
    assert files.disk_error(caught.value) == ("no space left on device", str(out))


def test_the_temporary_name_keeps_the_extension_that_picks_the_format(tmp_path):
    out = tmp_path / "patches.npy"
    with files.atomic(out) as tmp:
        assert tmp.suffix == ".npy" and tmp.name.startswith(".") and tmp.parent == tmp_path
        np.save(tmp, np.zeros(3))  # np.save would append .npy to any other name
    assert np.load(out).shape == (3,) and sorted(tmp_path.iterdir()) == [out]


def test_a_disk_error_is_found_inside_a_library_error():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/x/model.keras")
        except OSError as e:
            raise ValueError("could not save") from e
    except ValueError as wrapped:
        assert files.disk_error(wrapped) == ("no space left on device", "/x/model.keras")
    assert files.disk_error(ValueError("other")) is None


def test_a_folder_under_a_file_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("")
    line = files.check_writable(tmp_path / "file" / "results", "results")
    assert line.startswith("results: ") and "is a file, not a folder" in line
    assert files.check_writable(tmp_path / "new" / "results", "results") is None


def test_the_data_and_the_rename_reach_the_disk_in_that_order(tmp_path, monkeypatch):
    # A power cut cannot be made here: what is checked is the order of the calls that make the
    # output durable, each still done for real. The file's data is synced before the rename (else
    # a cut could leave the new name on an empty file), and after it the folder that holds the new
    # name and the folders made for it.
    events, fsync, replace = [], os.fsync, os.replace

    def synced(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def renamed(src, dst):
        events.append(("rename", str(dst)))
        return replace(src, dst)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "replace", renamed)
    out = tmp_path / "new" / "sub" / "table.tsv"
    files.write_text(out, "a\tb\n")
    temporary = str(files.temporary(out))
    assert events == [
        ("fsync", temporary),
        ("rename", str(out)),
        ("fsync", str(out.parent)),
        ("fsync", str(tmp_path / "new")),
        ("fsync", str(tmp_path)),
    ]
    assert out.read_text() == "a\tb\n"


def test_a_folder_can_be_synced_after_a_removal(tmp_path):
    # what the training backups call after renaming or removing a backup folder
    (tmp_path / "gone").write_text("x")
    os.unlink(tmp_path / "gone")
    files.fsync(tmp_path)
    with pytest.raises(FileNotFoundError):
        files.fsync(tmp_path / "missing")
