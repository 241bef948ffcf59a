"""Applying a trained model to new images: the library (tessera.apply) and `python -m tessera apply`."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tessera import TesseraError, apply, images, noise
from tessera import reconstruct as rec
from tests.conftest import REPO, sample
from tests.reference import whole_image

TILE = 32  # small tiles, so that even these small images are cut into many


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The files the workflow's training writes, for a compact model fitted for a few seconds on
    real patches (enough to follow its input): (model path, loaded model, summary)."""
    import keras

    from tessera import models
    from tessera.patches import extract

    keras.utils.set_random_seed(0)
    patches = [extract(sample(n), 32, 24, max_patches=128) for n in ("coffee.png", "astronaut.png")]
    x = np.concatenate(patches).astype(np.float32) / 255
    model = models.build("compact")
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="mse")
    model.fit(x, x, batch_size=32, epochs=6, verbose=0)
    out = tmp_path_factory.mktemp("model")
    model.save(out / "model.keras")
    summary = {"preset": "compact", **models.describe(model), "task": {"kind": "reconstruct"}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    model, summary = apply.load(out / "model.keras")
    return out / "model.keras", model, summary


def png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def rotated_jpeg(path):
    """A JPEG stored 60 wide and 36 high whose EXIF orientation (6) says to show it turned a
    quarter: upright it is 36 wide and 60 high."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(sample("rocket.jpg", (300, 200, 360, 236))).save(path, exif=exif, quality=95)
    return path


def mixed_folder(root):
    """Good images (one in a subfolder, one with a name the ids must rewrite) and bad files."""
    png(root / "odd.png", sample("astronaut.png", (150, 40, 220, 141)))  # 70 x 101
    png(root / "sub" / "deep.png", sample("coffee.png", (200, 100, 253, 141)))  # 53 x 41
    png(root / "my photo.png", sample("chelsea.png", (100, 100, 140, 130)))
    rotated_jpeg(root / "phone.jpg")
    png(root / ".hidden.png", sample("chelsea.png", (0, 0, 20, 20)))
    (root / "notes.png").write_text("not an image\n")
    whole = root / "whole.png"
    png(whole, sample("camera.png", (0, 0, 90, 90)))
    (root / "corrupt.png").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    return root


def test_a_folder_gives_one_output_of_each_images_size_and_skips_bad_files(trained, tmp_path):
    model_path, _, _ = trained
    source = mixed_folder(tmp_path / "in")
    warnings = []
    done = apply.apply_folder(
        model_path, source, tmp_path / "out", tile=TILE, batch_size=4, warn=warnings.append
    )
    # the workflow's own ids, less the two files that only fail once decoded
    ids = [f.image_id for f in images.discover(source) if f.image_id]
    good = sorted(set(ids) - {"notes.png", "corrupt.png"})
    renamed = images.image_id("my photo.png")
    assert renamed.startswith("my_photo~") and renamed in good
    expected_sizes = {"odd.png": (70, 101), "sub/deep.png": (53, 41), "phone.jpg": (36, 60)}
    expected_sizes[renamed] = (40, 30)
    assert sorted(expected_sizes) == good
    for name, size in expected_sizes.items():
        with Image.open(tmp_path / "out" / f"{name}.png") as out:
            assert out.size == size, name
    table = pd.read_csv(tmp_path / "out" / "metrics.tsv", sep="\t")
    assert sorted(table.image) == good
    assert {"psnr", "ssim", "mse", "seam_ratio", "tiles", "seconds"} <= set(table.columns)
    assert (table.psnr > 10).all() and (table.tiles > 1).all()  # the model follows its input

    skipped = pd.read_csv(tmp_path / "out" / "skipped.tsv", sep="\t")
    reasons = dict(zip(skipped.path, skipped.reason))
    assert reasons[str(source / ".hidden.png")] == "hidden file"
    assert reasons[str(source / "notes.png")].startswith("not an image")
    assert reasons[str(source / "corrupt.png")].startswith("cannot decode")
    assert sorted(warnings) == sorted(f"skipped {p}: {r}" for p, r in reasons.items())
    assert len(done.records) == 4 and len(done.skipped) == 3


def test_tiled_output_equals_the_model_on_the_whole_image(trained, tmp_path):
    model_path, model, summary = trained
    image = sample("astronaut.png", (150, 40, 220, 141))  # 70 x 101: no side a multiple of 4
    output, plan = apply.predict(model, summary, image, tile=TILE, batch_size=3)
    assert plan.count > 4 and output.shape == image.shape
    whole = whole_image(model, image, plan)
    # The same float32 convolutions over the same pixels, but summed in another order on a tile
    # batch than on the whole canvas (other shapes pick other kernels): outputs of about 0..1
    # then differ by a few float32 steps (1e-7), far below 1e-4; a tiling bug shows as 1e-2.
    assert np.abs(output - whole).max() < 1e-4
    # and what apply_image writes is that output in 8 bits
    record = apply.apply_image(
        model, summary, png(tmp_path / "a.png", image), "a.png", tmp_path / "a.out.png",
        tmp_path / "a.json", tile=TILE, batch_size=3,
    )  # fmt: skip
    written = np.asarray(Image.open(tmp_path / "a.out.png"))
    # a second run of the model may round a value the other way at the last 8-bit level
    assert np.abs(written.astype(int) - rec.to_uint8(output.copy())).max() <= 1
    on_disk = json.loads((tmp_path / "a.json").read_text())
    assert on_disk == record
    assert (record["image"], record["width"], record["height"]) == ("a.png", 70, 101)
    assert record["tiles"] == plan.count and record["margin"] == plan.margin
    assert record["psnr"] == pytest.approx(rec.metrics(image, written)["psnr"])


def test_an_exif_rotated_photo_is_processed_upright(trained, tmp_path):
    model_path, model, summary = trained
    photo = rotated_jpeg(tmp_path / "phone.jpg")
    record = apply.apply_image(
        model, summary, photo, "phone.jpg", tmp_path / "o.png", tile=TILE, mode="blend"
    )
    upright, _ = images.load_image(photo)
    with Image.open(tmp_path / "o.png") as out:
        assert out.size == (36, 60) == (record["width"], record["height"])
    output, _ = apply.predict(model, summary, upright, tile=TILE, mode="blend")
    written = np.asarray(Image.open(tmp_path / "o.png")).astype(int)
    assert np.abs(written - rec.to_uint8(output)).max() <= 1  # upright, not the file's turn


def test_a_single_file_is_named_after_itself(trained, tmp_path):
    model_path, _, _ = trained
    photo = png(tmp_path / "in" / "solo.png", sample("coffee.png", (0, 0, 45, 33)))
    done = apply.apply_folder(model_path, photo, tmp_path / "out", tile=TILE, ensemble=True)
    assert [r["image"] for r in done.records] == ["solo.png"] and done.records[0]["ensemble"]
    with Image.open(tmp_path / "out" / "solo.png.png") as out:
        assert out.size == (45, 33)
    assert pd.read_csv(tmp_path / "out" / "skipped.tsv", sep="\t").empty


def test_a_denoiser_gets_the_photo_as_it_is_and_nothing_is_measured(trained, tmp_path):
    model_path, model, summary = trained
    denoiser = tmp_path / "denoiser"
    denoiser.mkdir()
    shutil.copy(model_path, denoiser / "model.keras")
    task = {"kind": "denoise", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0}
    (denoiser / "summary.json").write_text(json.dumps(dict(summary, task=task)))
    image = sample("rocket.jpg", (250, 150, 320, 251))
    png(tmp_path / "in" / "noisy.png", image)
    apply.apply_folder(denoiser / "model.keras", tmp_path / "in", tmp_path / "out", tile=TILE)
    table = pd.read_csv(tmp_path / "out" / "metrics.tsv", sep="\t")
    assert list(table.image) == ["noisy.png"] and table.width[0] == 70
    assert not {"psnr", "ssim", "mse", "seam_ratio"} & set(table.columns)
    # No noise was added: the output is the model's on the image itself (to the last 8-bit
    # level, where a 1e-6 difference can round the other way).
    written = np.asarray(Image.open(tmp_path / "out" / "noisy.png.png")).astype(int)
    plan = rec.plan_for(image, summary, TILE, None, "crop")
    assert np.abs(written - rec.to_uint8(whole_image(model, image, plan))).max() <= 1
    noisy = whole_image(model, noise.fixed(image, task, "noisy.png"), plan)
    assert np.abs(written - rec.to_uint8(noisy)).max() > 1  # the check above can see noise


def test_no_recursive_reads_the_top_level_only(trained, tmp_path):
    model_path, _, _ = trained
    source = mixed_folder(tmp_path / "in")
    done = apply.apply_folder(
        model_path, source, tmp_path / "out", recursive=False, tile=TILE, warn=lambda line: None
    )
    assert "sub/deep.png" not in {r["image"] for r in done.records} and len(done.records) == 3
    assert not (tmp_path / "out" / "sub").exists()


def test_outputs_inside_the_input_folder_are_not_read_back(trained, tmp_path):
    model_path, _, _ = trained
    png(tmp_path / "a.png", sample("coffee.png", (0, 0, 40, 40)))
    for k in range(2):
        done = apply.apply_folder(model_path, tmp_path, tmp_path / "out", tile=TILE, overwrite=k)
        assert [r["image"] for r in done.records] == ["a.png"] and not done.skipped
    with pytest.raises(TesseraError, match="is the input folder"):
        apply.apply_folder(model_path, tmp_path, tmp_path, tile=TILE)


def one_line_naming(error, path):
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message
    return message


def test_a_folder_without_a_usable_image_is_an_error_naming_it(trained, tmp_path):
    model_path, _, _ = trained
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.txt").write_text("no images here\n")
    warnings = []
    with pytest.raises(TesseraError) as error:
        apply.apply_folder(model_path, tmp_path / "in", tmp_path / "out", warn=warnings.append)
    assert "no usable image" in one_line_naming(error, tmp_path / "in")
    assert warnings == [f"skipped {tmp_path / 'in' / 'readme.txt'}: not an image file extension"]


def test_tiling_settings_the_model_cannot_use_are_refused_by_name(trained, tmp_path):
    _, _, summary = trained
    with pytest.raises(TesseraError, match=r"^tile: 30 is not a multiple of .* 4$"):
        apply.check_tiling(summary, tile=30)
    with pytest.raises(TesseraError, match=r"^margin: .*; raise tile or lower the margin$"):
        apply.check_tiling(summary, tile=32, margin=16)
    with pytest.raises(TesseraError, match="^mode: unknown mode 'tiled'"):
        apply.check_tiling(summary, mode="tiled")


def model_without(tmp_path, trained, summary_text=None):
    """A copy of the trained model beside the given summary.json text (none: no summary)."""
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    shutil.copy(trained[0], folder / "model.keras")
    if summary_text is not None:
        (folder / "summary.json").write_text(summary_text)
    return folder / "model.keras"


def test_files_that_are_not_a_workflows_model_are_one_line_errors(trained, tmp_path):
    text = tmp_path / "model.keras"
    text.write_text("not a model\n")
    renamed_png = png(tmp_path / "png" / "model.png", sample("coffee.png", (0, 0, 9, 9)))
    renamed_png = renamed_png.rename(renamed_png.with_suffix(".keras"))
    bare_zip = tmp_path / "zip" / "model.keras"
    bare_zip.parent.mkdir()
    with zipfile.ZipFile(bare_zip, "w") as z:
        z.writestr("weights.bin", "0")
    for path in (text, renamed_png, bare_zip):
        with pytest.raises(TesseraError) as error:
            apply.load(path)
        assert "not a Keras model" in one_line_naming(error, path)
    with pytest.raises(TesseraError) as error:
        apply.load(tmp_path / "missing.keras")
    assert "does not exist" in one_line_naming(error, tmp_path / "missing.keras")

    lone = model_without(tmp_path, trained)
    with pytest.raises(TesseraError) as error:
        apply.load(lone)
    message = one_line_naming(error, lone)
    assert (
        "not a model this workflow wrote" in message
        and str(lone.parent / "summary.json") in message
    )

    summary = trained[2]
    for text in ("{broken", json.dumps({k: v for k, v in summary.items() if k != "size_multiple"})):
        path = model_without(tmp_path, trained, text)
        with pytest.raises(TesseraError) as error:
            apply.load(path)
        message = one_line_naming(error, path.parent / "summary.json")
        assert "not the summary.json this workflow writes" in message and str(path) in message
    assert "'size_multiple'" in message


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "tessera", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def test_the_command_line_writes_the_outputs_and_says_what_it_did(trained, tmp_path):
    model_path, _, _ = trained
    source = mixed_folder(tmp_path / "in")
    out = tmp_path / "out"
    proc = cli(
        "apply", str(model_path), str(source), str(out), "--tile", "32", "--batch-size", "4",
        "--mode", "blend", "--max-megapixels", "none",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "odd.png.png").exists() and (out / "sub" / "deep.png.png").exists()
    assert len(pd.read_csv(out / "metrics.tsv", sep="\t")) == 4
    assert proc.stdout.strip().splitlines() == [
        f"tessera apply: wrote 4 images to {out} (3 skipped, listed in {out / 'skipped.tsv'}); "
        f"metrics in {out / 'metrics.tsv'}"
    ]
    assert f"tessera apply: warning: skipped {source / 'notes.png'}: not an image" in proc.stderr
    # TensorFlow's start-up lines are held back
    assert "oneDNN" not in proc.stderr and "absl" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 3, proc.stderr


def test_the_command_line_help_lists_every_option():
    proc = cli("apply", "--help")
    assert proc.returncode == 0
    for option in (
        "MODEL", "INPUT", "OUTPUT", "--summary", "--tile", "--margin", "--mode", "--batch-size",
        "--ensemble", "--no-recursive", "--max-megapixels",
    ):  # fmt: skip
        assert option in proc.stdout, option
    assert proc.stdout.count("default") >= 8
    top = cli("--help")
    assert top.returncode == 0 and "apply" in top.stdout


def test_the_command_line_reports_a_bad_model_in_one_line(tmp_path):
    proc = cli("apply", str(tmp_path / "nope.keras"), str(tmp_path), str(tmp_path / "out"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"tessera apply: error: model '{tmp_path / 'nope.keras'}' does not exist"
    ]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    wrong = cli("apply", "m", "i", "o", "--max-megapixels", "lots")
    assert wrong.returncode == 2 and "--max-megapixels" in wrong.stderr


def test_a_restoring_model_gets_the_damaged_photo_as_it_is_and_nothing_is_measured(
    trained, tmp_path
):
    model_path, model, summary = trained
    restorer = tmp_path / "restorer"
    restorer.mkdir()
    shutil.copy(model_path, restorer / "model.keras")
    task = {"kind": "restore", "seed": 0, "degradations": [{"kind": "jpeg", "quality": [5, 5]}]}
    (restorer / "summary.json").write_text(json.dumps(dict(summary, task=task)))
    image = sample("rocket.jpg", (250, 150, 320, 251))
    png(tmp_path / "in" / "saved.png", image)
    apply.apply_folder(restorer / "model.keras", tmp_path / "in", tmp_path / "out", tile=TILE)
    table = pd.read_csv(tmp_path / "out" / "metrics.tsv", sep="\t")
    assert list(table.image) == ["saved.png"] and not {"psnr", "ssim"} & set(table.columns)
    # the image is the damaged one: no JPEG is made of it first (8-bit rounding: within 1 level)
    written = np.asarray(Image.open(tmp_path / "out" / "saved.png.png")).astype(int)
    plan = rec.plan_for(image, summary, TILE, None, "crop")
    assert np.abs(written - rec.to_uint8(whole_image(model, image, plan))).max() <= 1
    damaged = rec.model_input(image, "saved.png", task)
    assert np.abs(written - rec.to_uint8(whole_image(model, damaged, plan))).max() > 1
