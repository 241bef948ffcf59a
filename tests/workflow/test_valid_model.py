"""A real run of the workflow with a model of valid convolutions: the blog post's "32 in, 24 out".
Training compares its output with the centre of each patch, and reconstruction tiles so that
each tile gives only its share of the image."""

import inspect
import json

import numpy as np
import pytest
from PIL import Image

from tessera import models
from tests.conftest import snakemake, tiny_config, tiny_images
from tests.reference import whole_image

# dncnn of depth 4 with valid convolutions: 4 pixels fewer on every side, so a tile of 32 (the
# tiny config's) gives 24 outputs
MODEL = {"preset": "dncnn", "depth": 4, "padding": "valid"}


@pytest.mark.skipif(
    "padding" not in inspect.signature(models.PRESETS["dncnn"].build).parameters,
    reason="the dncnn preset has no padding argument in this checkout",
)
def test_a_valid_model_trains_on_patch_centres_and_tiles_32_in_24_out(tmp_path):
    images = tiny_images(tmp_path / "images")
    tiny_config(tmp_path / "tiny.yaml", images, model=MODEL)
    r = tmp_path / "results"
    # the reconstructions alone: the report and the baselines do not depend on the geometry
    targets = [f"results/reconstructed/{p.name}.png" for p in sorted(images.iterdir())]
    snakemake(tmp_path, *targets, "--configfile", str(tmp_path / "tiny.yaml"))
    summary = json.loads((r / "model" / "summary.json").read_text())
    assert (summary["output_scale"], summary["output_border"]) == (1, 4)
    assert summary["receptive_radius"] == 4 and np.isfinite(summary["final_val_loss"])

    import keras

    from tessera import reconstruct as rec

    model = keras.saving.load_model(r / "model" / "model.keras", compile=False)
    for source in sorted(images.iterdir()):
        image = np.asarray(Image.open(source).convert("RGB"))
        record = json.loads((r / "reconstructed" / f"{source.name}.json").read_text())
        rebuilt = np.asarray(Image.open(r / "reconstructed" / f"{source.name}.png"))
        assert rebuilt.shape == image.shape
        h, w = image.shape[:2]
        assert record["margin"] == 4 and record["tiles"] == -(-h // 24) * -(-w // 24)
        # the tiles' outputs stitched are the model run on the whole image: in 8 bits, a value
        # may round the other way at the last level
        plan = rec.plan_for(image, summary, 32, None, "crop")
        whole = rec.to_uint8(whole_image(model, image, plan))
        assert np.abs(rebuilt.astype(int) - whole).max() <= 1
        assert record["psnr"] > 0
