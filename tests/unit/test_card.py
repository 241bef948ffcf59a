"""The model card (tessera.card, MODEL.md) and `tessera describe`."""

import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tessera import api, baselines, card
from tessera import reconstruct as rec
from tests.conftest import REPO, sample
from tests.unit.conftest import CROPS, DENOISE, PATCHES

TILING = {"mode": "crop", "tile": 32, "margin": None, "ensemble": False}
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def figures(dncnn_model, photos, tmp_path_factory):
    """What the reconstruction and baselines stages write for the denoiser, on the crops."""
    folder, split_tsv, _ = photos
    out = tmp_path_factory.mktemp("stages")
    records = []
    for image in CROPS:
        records.append(out / f"{image}.json")
        rec.run(
            dncnn_model / "model.keras", dncnn_model / "summary.json", folder / image, image,
            out / f"{image}.png", records[-1], TILING["tile"], None, "crop", 8, task=DENOISE,
        )  # fmt: skip
    sources = {image: folder / image for image in CROPS}
    baselines.run(split_tsv, sources, out / "metrics.tsv", out / "parameters.json", DENOISE)
    return split_tsv, records, out / "metrics.tsv"


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_the_card_says_what_the_model_is_and_how_it_scores(dncnn_model, figures, tmp_path):
    split_tsv, records, metrics = figures
    text = card.write(
        tmp_path / "MODEL.md", dncnn_model / "summary.json", dncnn_model / "model.keras",
        split_tsv, records, metrics, TILING, PATCHES, "results/model",
    )  # fmt: skip
    assert (tmp_path / "MODEL.md").read_text() == text
    summary = json.loads((dncnn_model / "summary.json").read_text())
    assert text.startswith("# dncnn: denoise\n")
    assert "- task: `denoise` (gaussian noise, sigma 25)" in text
    assert f"- parameters: {summary['params']:,} (" in text
    assert f"- receptive radius: {summary['receptive_radius']} pixels" in text
    margin = api.load(dncnn_model).default_margin()
    assert f"tiles of 32 pixels with a margin of {margin}" in text and "It takes any height" in text
    assert "- images: 2 for training, 1 for validation" in text
    listed = hashlib.sha256(b"coffee.png\nrocket.png").hexdigest()[:16]
    assert f"sha256 `{listed}`" in text
    assert "- patches: 16 x 16 pixels, stride 8, sampling grid" in text
    assert f"- epochs: {summary['epochs']}" in text
    # the validation image's own PSNR, against non-local means with its chosen parameter
    ours = json.loads(records[list(CROPS).index("chelsea.png")].read_text())["psnr"]
    assert f"| this network |  | 1 | {ours:.2f} |" in text
    chosen = json.loads((metrics.parent / "parameters.json").read_text())["parameters"]
    assert f"| non-local means | {chosen['non-local means']} | 1 |" in text
    flags = summary["flags"]
    assert all(f"- {flag}" in text for flag in flags) and (flags or "## Flags\n\nNone:" in text)
    assert 'keras.saving.load_model("results/model/model.keras")  # standard layers' in text


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["compact_model", "holes_model"])
def test_the_cards_snippets_restore_an_image_as_the_api_does(request, name, tmp_path):
    """The card's three ways to load the model, run as they are written in a folder of their own:
    tessera.api, plain Keras (with Tessera's layers for the model told its holes) and
    onnxruntime on the exported file, which must agree with the API's tiled result."""
    folder = request.getfixturevalue(name)
    summary = json.loads((folder / "summary.json").read_text())
    text = card.render(summary, folder, card.layers_in_archive(folder / "model.keras"))
    model = api.load(folder)
    model.export(tmp_path / "model.onnx")
    text = text.replace(f"{folder}/model.onnx", str(tmp_path / "model.onnx"))
    image = sample("chelsea.png", (100, 60, 223, 137)).copy()  # 123 x 77: padded to the multiple
    image[20:30, 40:52] = 128  # holes, for the model told them; noise in a photo for the rest
    Image.fromarray(image).save(tmp_path / "photo.png")
    api_code, keras_code, onnx_code = python_blocks(text)

    def run(code):
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
            timeout=300, env=ENV,
        )  # fmt: skip
        assert proc.returncode == 0, code + proc.stderr[-3000:]
        return proc.stdout

    run(api_code)
    by_api = np.asarray(Image.open(tmp_path / "restored.png"))
    loaded = run(keras_code + "\nprint(network.count_params())\n")
    assert loaded.split()[-1] == str(model.network.count_params())
    run(onnx_code)
    by_onnx = np.asarray(Image.open(tmp_path / "restored.png"))
    np.testing.assert_array_equal(by_api, model.restore(image))
    # one pass over the padded image against tiles: equal up to float rounding, which moves an
    # 8-bit value by at most one step where it falls on a rounding edge
    assert by_onnx.shape == by_api.shape
    assert np.abs(by_onnx.astype(int) - by_api.astype(int)).max() <= 1


@pytest.mark.slow
def test_the_card_of_a_model_told_its_holes_says_how_to_mark_them(holes_model):
    summary = json.loads((holes_model / "summary.json").read_text())
    layers = card.layers_in_archive(holes_model / "model.keras")
    assert sorted(layers) == ["FillHoles", "HoleMask", "KeepKnown"]
    text = card.render(summary, "results/model", layers)
    assert "- holes: paint them exactly RGB (128, 128, 128)" in text
    assert "custom_objects=tessera.api.custom_objects()" in text
    assert "multiples of 4 (the network down-samples 2 times)" in text


def test_the_training_list_hash_follows_the_list_alone(tmp_path):
    rows = "image\tpath\tsplit\tpatches\na.png\ta.png\ttrain\t3\nb.png\tb.png\tval\t2\n"
    (tmp_path / "split.tsv").write_text(rows)
    first = card.dataset(tmp_path / "split.tsv")
    assert first == {
        "train_images": 1,
        "val_images": 1,
        "train_list_sha256": hashlib.sha256(b"a.png").hexdigest()[:16],
    }
    (tmp_path / "split.tsv").write_text(rows.replace("b.png\tval", "b.png\ttrain"))
    assert card.dataset(tmp_path / "split.tsv")["train_list_sha256"] != first["train_list_sha256"]


def test_describe_lists_every_preset_with_its_arguments_and_every_task():
    from tessera import models, tasks

    proc = subprocess.run(
        [sys.executable, "-m", "tessera", "describe"], capture_output=True, text=True, env=ENV,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for name, preset in models.PRESETS.items():
        assert f"  {name}: {preset.description}" in proc.stdout
        assert preset.arguments() in proc.stdout
    for kind in tasks.REGISTRY:
        assert re.search(rf"^  {kind}: \w", proc.stdout, re.M), kind


@pytest.mark.slow
def test_describe_a_model_folder_prints_its_card(dncnn_model):
    proc = subprocess.run(
        [sys.executable, "-m", "tessera", "describe", str(dncnn_model)], capture_output=True,
        text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((dncnn_model / "summary.json").read_text())
    assert proc.stdout == card.render(summary, dncnn_model, [])
    missing = subprocess.run(
        [sys.executable, "-m", "tessera", "describe", str(dncnn_model / "nothing.keras")],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"tessera describe: error: model '{dncnn_model / 'nothing.keras'}' does not exist"
    )
