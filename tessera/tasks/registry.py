"""The task registry: what the model learns, as tessera.models holds what the model is.

A task is named by the config's `task.kind`. Each is a subclass of Task, defined in its own module
`tessera/tasks/<kind>.py` and registered there with `@register("<kind>")`; the package's
`__init__` imports that module (a static import, so that tessera/codeversion.py hashes it into
every stage that uses tasks; this registry never imports its members), and the kind, with any
settings of its own under `task:`, goes into config/config.schema.yaml. Adding a task touches those two places and nothing else: training,
validation, the baselines, reconstruction, apply, the report and the comparison page all ask the
task through the methods below. `spec` is always the config's `task` mapping.

How the model's training input is made from a clean uint8 patch, in one of two places:

- on the device, inside the training step (`on_device`): keras.ops on float 0..255 tensors of the
  already flipped and turned clean patches, with per-patch offsets into the trainer's bank of
  normal values (`uses_noise_bank`), so TensorFlow, JAX and PyTorch do it on the GPU;
- on the host (`on_host`), where keras.ops cannot (a real JPEG encode): numpy on the uint8 batch,
  every draw from the generator it is given, which tessera.batches.Batches keys by (seed, epoch,
  batch), never the global random state, so a resumed run draws the same damage. It returns the
  batch the device gets: the clean patches alone (3 channels, then `on_device` makes the input), or
  clean and input side by side on the channel axis (6 channels, set `channels = 6`), which the
  training step flips and turns together, so they stay aligned.

A task whose input comes from the host data rather than from the clean patch (pairs of damaged and
clean images) sets `channels = 6`, has its patch source give 6-channel patches (clean, then
damaged) and returns them from `on_host` as they are; `validation` splits them the same way.

The rest of what a task says:

- `fixed(clean, spec, name)`: the fixed input of one image (validation, reconstruction, baselines,
  report), drawn from `task.seed` and the name only; returns (input, extra), `extra` being what a
  classical method may know of the damage (a noise level, a mask of holes). The input is `clean`
  itself (the same object) when the task changes nothing.
- `validation(patches, spec)`: the fixed validation (input, target) uint8 arrays.
- `baselines(spec)`: {name: (function(input, parameter, extra), parameters tried)}: classical
  methods, each parameter chosen on the training images by tessera.baselines; `evaluate` scores
  the input and each method on one image (override it for other rows, as reconstruct's JPEG sizes).
- `input_caption`: the picture shown beside each image in the report and on the comparison page
  (None: the input is the image itself); `input_word` names the input in warnings and verdicts.
- `input_is_target`: the input is the truth, so apply can measure its outputs against it.
- `model_options(spec)`: what the task adds to the model section (a fill colour under "mask",
  so that the network is given a mask of its holes; a "factor" for a network that enlarges;
  tessera.models).
- `scale(spec)`: how many times larger than its input the model's output is (1 but for upscale).
  A task of scale f hands the device its input as 6-channel patches too, each input pixel
  repeated f x f times, so that flips and turns keep the two sides aligned; the training step
  takes every f-th pixel back.
- `truth(clean, spec)`: what an output is measured against (an upscale task crops the image to
  a multiple of its factor); `as_output(given, spec)`: the input as an output would be, to
  measure against the truth (an upscale task's bicubic enlargement); `pictures(given, spec)`:
  more pictures for the report beside the input.
- `loss_weights(given, spec)` (keras.ops, in the training step): where the loss is counted, or
  None for everywhere (holes the network alone may change: the loss is their mean).
"""

import numpy as np

from tessera import TesseraError
from tessera.noise import rng_for  # noqa: F401  (the fixed draws of every task)

REGISTRY = {}


def register(kind):
    """Class decorator: make a Task subclass the task of `task.kind: <kind>`."""

    def add(cls):
        REGISTRY[kind] = cls()
        cls.kind = kind
        return cls

    return add


def get(spec):
    """The task of a config's `task` mapping (None or {} is reconstruct)."""
    kind = (spec or {}).get("kind", "reconstruct")
    if kind not in REGISTRY:
        raise TesseraError(
            f"task.kind: unknown task '{kind}'; choose one of: {', '.join(sorted(REGISTRY))}"
        )
    return REGISTRY[kind]


def psnr_inside(clean, output, mask):
    """PSNR (dB, 8-bit scale) over the pixels where mask is True only: a hole's filling."""
    d = clean[mask].astype(np.float64) - output[mask].astype(np.float64)
    mse = float(np.mean(d * d)) if d.size else 0.0
    return round(10 * np.log10(255**2 / mse), 4) if mse > 0 else float("inf")


class Task:
    kind = None
    channels = 3  # what the host hands the device per patch: 3 (clean) or 6 (clean, input)
    uses_noise_bank = False
    input_caption = None
    input_word = "given"
    output_word = "rebuilt"
    input_is_target = False

    def describe(self, spec):
        """The task's settings in a few words, for the report ("" for none)."""
        return ""

    def model_options(self, spec):
        return {}

    def scale(self, spec):
        return 1

    def truth(self, clean, spec):
        return clean

    def as_output(self, given, spec):
        return given

    def pictures(self, given, spec):
        return []

    def loss_weights(self, given, spec):
        return None

    def on_host(self, patches, spec, rng):
        return patches

    def on_device(self, trainer, clean, offsets, spec):
        return clean

    def fixed(self, clean, spec, name):
        return clean, None

    def validation(self, patches, spec):
        if self.channels == 6 and patches.shape[-1] == 6:
            return patches[..., 3:], patches[..., :3]
        given, _ = self.fixed(patches, spec, "validation")
        return given, patches

    def baselines(self, spec):
        return {}

    def evaluate(self, image_id, clean, spec, params):
        """What the baselines stage scores on one image: rows (method, parameter, output, bytes
        per pixel), the input itself first, then each classical method with its chosen
        parameter; and the fixed draw's extra (a mask of holes is measured apart)."""
        given, extra = self.fixed(clean, spec, image_id)
        rows = [(f"{self.input_word} input", None, self.as_output(given, spec), None)]
        table = self.baselines(spec)
        for name, value in params.items():
            rows.append((name, value, table[name][0](given, value, extra), None))
        return rows, extra


def model_input(clean, image_id, spec):
    """What the model is given for an image: the image itself, or the task's damaged copy fixed
    by the task's seed and the image's id."""
    return get(spec).fixed(clean, spec or {}, image_id)[0]


def holes_of(extra):
    """The mask of holes a fixed draw made (True inside), or None."""
    return extra.get("holes") if isinstance(extra, dict) else None
