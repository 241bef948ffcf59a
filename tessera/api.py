"""Using a trained model from Python, outside the workflow.

    from PIL import Image
    import tessera.api

    model = tessera.api.load("results/model")         # the folder training wrote
    restored = model.restore(Image.open("photo.png"))   # a uint8 numpy array
    Image.fromarray(restored).save("restored.png")

restore tiles the image exactly as the workflow's reconstruction and `tessera apply` do (the one
rebuild path, tessera.reconstruct), so the array is the one they would write, for a model of any
task and output scale. It runs on whichever Keras backend is installed (KERAS_BACKEND).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from tessera import TesseraError, apply, models
from tessera import reconstruct as rec
from tessera.images import holes_of_mask
from tessera.measure import to_uint8
from tessera.tasks.restore import mark_holes

if TYPE_CHECKING:
    import keras
    from PIL import Image

ImageLike = Union[np.ndarray, "Image.Image", str, Path]


@dataclass
class TrainedModel:
    """A network trained by Tessera with its summary.json: what it restores, and how."""

    network: keras.Model
    summary: dict
    model_path: Path
    summary_path: Path
    network_file: Path | None = None

    @property
    def task(self) -> str:
        """The task it was trained for: reconstruct, denoise, restore, paired..."""
        return self.summary["task"]["kind"]

    @property
    def size_multiple(self) -> int:
        """Its input's height and width must be multiples of this (2 ** down-samplings)."""
        return self.summary["size_multiple"]

    @property
    def receptive_radius(self) -> int:
        """How far, in pixels, an input pixel reaches in the output."""
        return self.summary["receptive_radius"]

    @property
    def output_scale(self) -> Fraction:
        """Output side over input side: 1, or 2 for a model that doubles the resolution."""
        return Fraction(str(self.summary.get("output_scale", 1)))

    def default_margin(self) -> int:
        """The margin restore uses when given none: the receptive radius (and the output border),
        rounded up to whole steps of the size multiple."""
        s = self.summary
        return rec.default_margin(
            s["receptive_radius"], s["size_multiple"], s.get("output_border", 0), self.output_scale
        )

    def restore(
        self,
        image: ImageLike,
        *,
        tile: int = 128,
        margin: int | None = None,
        mode: str = "crop",
        batch_size: int = 8,
        ensemble: bool = False,
        mask: ImageLike | None = None,
    ) -> np.ndarray:
        """The model's output for one image, as uint8 RGB (height, width, 3), its height and width
        the image's times the output scale.

        image: a uint8 numpy array (height, width, 3), (height, width) gray or (height, width, 4)
        with alpha; a PIL image; or an image file's path, decoded as the workflow decodes it. The
        model is given the image as it is: the damaged photo, for a restoring model. tile, margin,
        mode, batch_size and ensemble are the workflow's reconstruct settings (margin None: the
        default_margin); any size of image is tiled the same way. mask: for a model told of
        holes, where they are, white (or True) where missing: a bool array (height, width) or an
        image as above; without it, the pixels of exactly the holes' gray are the holes.
        """
        rgb = as_rgb(image)
        if mask is not None:
            hole = mask if isinstance(mask, np.ndarray) and mask.dtype == bool else as_rgb(mask)
            rgb = mark_holes(rgb, holes_of_mask(hole, rgb.shape[:2]))
        apply.check_tiling(self.summary, tile, margin, mode, batch_size)
        out, _ = rec.tiled(
            self.network, rgb, self.summary, tile, margin, mode, batch_size, ensemble
        )
        return to_uint8(out)

    def export(self, out: str | Path, format: str | None = None, overwrite: bool = False) -> Path:
        """Write the network for use without Tessera: format onnx, savedmodel or tflite (None: the
        one out's name says), float32, any height and width (tessera.export)."""
        from tessera import export

        network = self.network
        if network.dtype_policy.name != "float32":
            network = _network(self.model_path, self.summary, self.network_file, "float32")
        return export.export(network, out, format, overwrite)


def load(
    path: str | Path,
    summary: str | Path | None = None,
    *,
    network_file: str | Path | None = None,
    precision: str | None = None,
) -> TrainedModel:
    """Load a trained model: a model folder (model.keras and summary.json, as training writes
    them) or a model.keras file (its summary.json beside it, or given).

    network_file: for a network that is a user's own Python file (trained with model.file), that
    file: its code runs, so it runs only when named, and only if it is the code the model trained
    with (a preset's network runs no
    code from the files). precision: the dtype policy to build it under (None: the one it trained
    with; "float32" for an export). Any problem with the files is one TesseraError naming them.
    """
    model_path = keras_file(path)
    summary_path, found = apply.read_summary(model_path, summary)
    network = _network(model_path, found, network_file, precision)
    shapes = [getattr(network, "input_shape", None), getattr(network, "output_shape", None)]
    if any(not isinstance(s, tuple) or s[-1:] != (3,) for s in shapes):
        raise TesseraError(
            f"model '{model_path}' maps {shapes[0]} to {shapes[1]}, not RGB images to RGB images"
        )
    return TrainedModel(network, found, model_path, summary_path, network_file)


def keras_file(path: str | Path) -> Path:
    """The model.keras of a model folder, or path itself."""
    path = Path(path)
    return path / "model.keras" if path.is_dir() else path


def _network(model_path, summary, network_file, precision):
    if precision is not None:
        summary = {**summary, "precision": precision}
    try:
        return models.load_trained(model_path, summary, network_file)
    except TesseraError:
        raise
    except Exception as e:
        detail = " ".join(str(e).split())[:300] or type(e).__name__
        raise TesseraError(f"model '{model_path}' cannot be loaded by Keras: {detail}") from e


def as_rgb(image: ImageLike) -> np.ndarray:
    """image as the uint8 RGB array (height, width, 3) the model is given: an array as it is, a
    PIL image or a file turned upright and converted as the workflow converts them (alpha on
    white, 16-bit gray scaled)."""
    from PIL import Image, ImageOps

    from tessera import images

    if isinstance(image, (str, Path)):
        return images.load_image(image)[0]
    if isinstance(image, Image.Image):
        return images._to_rgb8(ImageOps.exif_transpose(image))
    if not isinstance(image, np.ndarray):
        raise TesseraError(
            f"image: a {type(image).__name__}, not a numpy array, a PIL image or a file's path"
        )
    if image.dtype != np.uint8:
        raise TesseraError(
            f"image: an array of {image.dtype}, not uint8 0..255 (floats in 0..1: "
            "(x * 255).round().astype('uint8'))"
        )
    channels = image.shape[2] if image.ndim == 3 else None
    if image.ndim == 3 and channels == 3:
        return np.ascontiguousarray(image)
    if image.ndim == 2 or channels in (1, 4):
        return images._to_rgb8(Image.fromarray(image[..., 0] if channels == 1 else image))
    raise TesseraError(
        f"image: an array of shape {image.shape}, not (height, width, 3), (height, width) or "
        "(height, width, 4)"
    )


def custom_objects() -> dict:
    """Tessera's own layers by class name, registered with Keras (package "tessera"): pass them
    to keras.saving.load_model, whose own registry then also knows them."""
    import keras

    from tessera.models import layers

    # The layers are defined on first use, so that reading the registries starts no framework:
    # each *_layers() function of tessera.models.layers defines and registers its group.
    for name, define in vars(layers).items():
        if name.endswith("_layers") and callable(define):
            define()
    found = keras.saving.get_custom_objects()
    return {key.split(">", 1)[1]: cls for key, cls in found.items() if key.startswith("tessera>")}
