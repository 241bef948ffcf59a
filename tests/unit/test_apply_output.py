"""`python -m tessera apply` and tessera.apply.apply_folder with an OUTPUT that cannot take the
results: checked before Keras starts, never the input's own folder, an earlier run's tables kept
unless asked, and the tables of the images done written when one fails halfway."""

import subprocess
import sys

import pandas as pd
import pytest

from tessera import TesseraError, apply
from tests.conftest import REPO, sample
from tests.unit.test_apply import TILE, cli, png, trained  # noqa: F401 (a fixture)


def photos(folder, names=("a.png", "b.png", "c.png")):
    for k, name in enumerate(names):
        png(folder / name, sample("coffee.png", (40 * k, 0, 40 * k + 40, 40)))
    return folder


def test_one_file_is_never_rebuilt_into_its_own_folder(trained, tmp_path):
    model_path, _, _ = trained
    photos(tmp_path / "photos", ["a.png"])
    with pytest.raises(TesseraError, match="is the folder of input"):
        apply.apply_folder(model_path, tmp_path / "photos" / "a.png", tmp_path / "photos")
    proc = cli(
        "apply", str(model_path), str(tmp_path / "photos" / "a.png"), str(tmp_path / "photos")
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"tessera apply: error: output folder '{tmp_path / 'photos'}' is the folder of input "
        f"'{tmp_path / 'photos' / 'a.png'}': choose another one, so that outputs are not mixed "
        "with the images"
    ]
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["a.png"]


def test_an_earlier_runs_tables_are_kept_unless_overwrite_is_given(trained, tmp_path):
    model_path, _, _ = trained
    source, out = photos(tmp_path / "in"), tmp_path / "out"
    args = ("apply", str(model_path), str(source), str(out), "--tile", str(TILE))
    assert cli(*args).returncode == 0
    before = (out / "metrics.tsv").read_bytes()
    (source / "b.png").unlink()
    again = cli(*args)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines() == [
        f"tessera apply: error: output folder '{out}' already holds metrics.tsv and skipped.tsv of "
        "an earlier run: choose another folder, or overwrite them (--overwrite)"
    ]
    assert (out / "metrics.tsv").read_bytes() == before
    assert cli(*args, "--overwrite").returncode == 0
    assert list(pd.read_csv(out / "metrics.tsv", sep="\t").image) == ["a.png", "c.png"]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda out: out.write_text("a file"), "is a file: choose a folder to write to"),
        (lambda out: None, "cannot be made: [Errno 20] Not a directory"),
    ],
)
def test_output_is_checked_before_keras_is_loaded(trained, tmp_path, make, expected):
    model_path, _, _ = trained
    source = photos(tmp_path / "in", ["a.png"])
    (tmp_path / "file").write_text("a file")
    out = tmp_path / "out"
    make(out)
    out = out if out.exists() else tmp_path / "file" / "sub"
    code = (
        "import sys; from tessera.__main__ import main; "
        f"rc = main(['apply', {str(model_path)!r}, {str(source)!r}, {str(out)!r}]); "
        "print(rc, 'keras' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == ["1", "False"], proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tessera apply: error: output folder")
    assert expected in lines[0], lines


def test_an_image_failing_halfway_leaves_the_tables_of_those_done(trained, tmp_path):
    model_path, _, _ = trained
    source, out = photos(tmp_path / "in"), tmp_path / "out"
    (out / "b.png.png").mkdir(parents=True)  # b's output cannot be written: a folder has its name
    with pytest.raises(TesseraError) as error:
        apply.apply_folder(model_path, source, out, tile=TILE)
    message = str(error.value)
    assert "\n" not in message and f"image '{source / 'b.png'}' failed" in message, message
    assert "the 1 done before it are listed in" in message
    assert list(pd.read_csv(out / "metrics.tsv", sep="\t").image) == ["a.png"]
    assert (out / "skipped.tsv").exists() and not list(out.glob(".*.tmp"))
