"""Applying a trained model to any image or folder, at full size, tiled as the workflow rebuilds.

The model and its summary.json come from the workflow's training stage; images are found and
decoded as the workflow finds and decodes them, and each output keeps its input's width and height.
"""

import functools
import json
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from tessera import TesseraError, models, tasks
from tessera import reconstruct as rec
from tessera.files import write_tsv
from tessera.tasks.restore import told_of_holes
from tessera.images import (
    DEFAULT_MAX_MEGAPIXELS,
    UnusableImage,
    discover,
    find_masks,
    image_id,
    load_image,
)

# What tiling needs from summary.json: the model's size multiple and reach, and what it was given.
TILING_KEYS = ("size_multiple", "receptive_radius", "task")
TASKS = tuple(tasks.REGISTRY)


@dataclass
class Applied:
    """What apply_folder did: one record per image written, and (path, reason) per file skipped."""

    out_dir: Path
    records: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    @property
    def metrics_tsv(self):
        return self.out_dir / "metrics.tsv"

    @property
    def skipped_tsv(self):
        return self.out_dir / "skipped.tsv"


def read_summary(model_path, summary_path=None):
    """Check that model_path looks like a Keras model and read its summary, without starting Keras.

    summary_path defaults to summary.json next to the model. Returns (summary path, summary).
    """
    model_path = Path(model_path)
    _check_model_file(model_path)
    default = summary_path is None
    summary_path = model_path.with_name("summary.json") if default else Path(summary_path)
    not_ours = f"not the summary.json this workflow writes next to model '{model_path}'"
    if not summary_path.is_file():
        if default:
            raise TesseraError(
                f"no summary next to model '{model_path}': '{summary_path}' does not exist, so it "
                "is not a model this workflow wrote (training writes summary.json beside the model)"
            )
        what = "is a folder" if summary_path.is_dir() else "does not exist"
        raise TesseraError(f"summary '{summary_path}' {what}")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise TesseraError(f"summary '{summary_path}' cannot be read: {_one_line(e)}") from None
    except json.JSONDecodeError as e:
        raise TesseraError(
            f"summary '{summary_path}' is not JSON ({e.msg}, line {e.lineno}): {not_ours}"
        ) from None
    problems = _summary_problems(summary)
    if problems:
        raise TesseraError(f"summary '{summary_path}' {problems}: {not_ours}")
    return summary_path, summary


def _check_model_file(path):
    if not path.exists():
        raise TesseraError(f"model '{path}' does not exist")
    if path.is_dir():
        raise TesseraError(f"model '{path}' is a folder, not a .keras model file")
    models.refuse_hdf5(path)
    if path.suffix != ".keras":
        raise TesseraError(f"model '{path}' is not a .keras file (its name must end .keras)")
    try:
        # Keras' own errors for these say "File not found" or name a missing archive member.
        if not zipfile.is_zipfile(path):
            raise TesseraError(f"model '{path}' is not a Keras model (not a .keras zip archive)")
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except OSError as e:
        raise TesseraError(f"model '{path}' cannot be read: {_one_line(e)}") from None
    except zipfile.BadZipFile as e:
        raise TesseraError(f"model '{path}' is a damaged zip archive: {_one_line(e)}") from None
    if "config.json" not in names:
        raise TesseraError(
            f"model '{path}' is not a Keras model (a zip archive without Keras' config.json)"
        )


def _summary_problems(summary):
    if not isinstance(summary, dict):
        return f"holds a JSON {type(summary).__name__}, not an object"
    missing = [k for k in TILING_KEYS if k not in summary]
    if missing:
        return f"lacks {', '.join(repr(k) for k in missing)}"
    multiple, radius, task = (summary[k] for k in TILING_KEYS)
    if not _is_int(multiple) or multiple < 1:
        return f"has size_multiple {multiple!r}, not a positive integer"
    if not _is_int(radius) or radius < 0:
        return f"has receptive_radius {radius!r}, not a whole number of pixels"
    if not isinstance(task, dict) or task.get("kind") not in TASKS:
        return f"has task {task!r}, whose kind is not one of: {', '.join(TASKS)}"
    # written since models report their geometry; older summaries are of same-size models
    border = summary.get("output_border", 0)
    if not _is_int(border) or border < 0:
        return f"has output_border {border!r}, not a whole number of pixels"
    scale = summary.get("output_scale", 1)
    try:
        ok = not isinstance(scale, bool) and Fraction(str(scale)) > 0
    except (ValueError, ZeroDivisionError):
        ok = False
    if not ok:
        return f"has output_scale {scale!r}, not a positive number or fraction such as '1/4'"
    return None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def load(model_path, summary_path=None, model_file=None):
    """The Keras model and its summary dict; any problem with either file is one TesseraError.
    model_file: the Python file that builds the network of a model trained with model.file, named
    by the user (its code runs); without it such a model is refused."""
    summary_path, summary = read_summary(model_path, summary_path)
    try:
        model, _ = rec.load(model_path, summary_path, model_file)
    except TesseraError:
        raise
    except Exception as e:
        raise TesseraError(
            f"model '{model_path}' cannot be loaded by Keras: {_one_line(e, 300)}"
        ) from e
    shapes = [getattr(model, "input_shape", None), getattr(model, "output_shape", None)]
    if any(not isinstance(s, tuple) or s[-1:] != (3,) for s in shapes):
        raise TesseraError(
            f"model '{model_path}' maps {shapes[0]} to {shapes[1]}, not RGB images to RGB images: "
            "not a model this workflow wrote"
        )
    return model, summary


def check_tiling(summary, tile=128, margin=None, mode="crop", batch_size=8):
    """Refuse tiling settings the model cannot use, before any image is read."""
    if not _is_int(batch_size) or batch_size < 1:
        raise TesseraError(f"batch_size: {batch_size!r} must be a whole number of at least 1")
    if margin is not None and (not _is_int(margin) or margin < 0):
        raise TesseraError(f"margin: {margin!r} must be a whole number of pixels, 0 or more")
    if not _is_int(tile) or tile < 1:
        raise TesseraError(f"tile: {tile!r} must be a whole number of pixels, 1 or more")
    try:
        rec.plan_for(np.empty((1, 1, 3), np.uint8), summary, tile, margin, mode)
    except TesseraError as e:
        # Outside the workflow the settings are not config keys: name them as the caller does.
        raise TesseraError(str(e).replace("reconstruct.", "")) from None


def predict(
    model, summary, image, tile=128, margin=None, mode="crop", batch_size=8, ensemble=False
):
    """The model's float32 output for a uint8 image, tiled as the workflow tiles; returns
    (output, plan)."""
    return rec.tiled(model, image, summary, tile, margin, mode, batch_size, ensemble)


def apply_image(
    model,
    summary,
    image_path,
    image_id,
    out_png,
    out_json=None,
    tile=128,
    margin=None,
    mode="crop",
    batch_size=8,
    ensemble=False,
    max_megapixels=DEFAULT_MAX_MEGAPIXELS,
    mask_path=None,
):
    """Run the model on one image file as it is and write the result as a PNG of the same size
    (times the model's output scale, for a model that changes the resolution).

    A denoising or restoring model gets the photo itself as its damaged input. Only a
    reconstructing model, whose input is also the truth, is measured (PSNR, SSIM, MSE, seam
    ratio). mask_path: a mask image of the holes (white) for a model told of holes; without one,
    the photo's pixels of exactly the holes' gray are its holes. Returns the record, also
    written to out_json when given. Raises UnusableImage for a file that cannot be decoded.
    """
    measured = ("metrics", "seam_ratio") if tasks.get(summary["task"]).input_is_target else ()
    return rec.rebuild(
        model,
        summary,
        image_path,
        image_id,
        out_png,
        out_json,
        tile,
        margin,
        mode,
        batch_size,
        max_megapixels=max_megapixels,
        ensemble=ensemble,
        measures=measured,
        source=image_path,
        mask_path=mask_path,
    )


def apply_folder(
    model_path,
    source,
    out_dir,
    summary_path=None,
    recursive=True,
    tile=128,
    margin=None,
    mode="crop",
    batch_size=8,
    ensemble=False,
    max_megapixels=DEFAULT_MAX_MEGAPIXELS,
    progress=None,
    warn=None,
    overwrite=False,
    model_file=None,
    masks=None,
):
    """Apply a model to one image file, or to every image of a folder as the workflow finds them.

    Writes out_dir/<image id>.png per image, metrics.tsv (one row per image) and skipped.tsv (the
    files that could not be used, each also passed to warn as "skipped <path>: <reason>"). progress
    wraps the list of images (a progress bar). An out_dir that already holds those tables is
    refused unless overwrite is set. When an image fails for another reason than its file, the
    tables of the images done before it are written and the TesseraError names it. model_file:
    as for load. masks: a folder of mask images, white where a hole is, one for each image at
    the same path whatever its extension (photo.jpg's mask is photo.png), for a model told of
    holes; an image without one falls back to its pixels of the holes' gray. Returns an Applied.
    """
    warn = warn or functools.partial(print, file=sys.stderr)
    source, out_dir = Path(source), Path(out_dir)
    check_output(source, out_dir, overwrite)
    model, summary = load(model_path, summary_path, model_file)
    if masks is not None:
        check_masks(summary, masks)
    check_tiling(summary, tile, margin, mode, batch_size)
    folder, found, skipped = inputs(source, out_dir, recursive)
    mask_of = find_masks(masks, list(found.values()), recursive) if masks is not None else {}
    todo = [(folder / path, image) for image, path in found.items()]
    skipped = [(str(folder / path), reason) for path, reason in skipped]
    done = Applied(out_dir, skipped=skipped)
    for path, reason in skipped:
        warn(f"skipped {path}: {reason}")
    for path, name in progress(todo) if progress else todo:
        try:
            record = apply_image(
                model,
                summary,
                path,
                name,
                out_dir / f"{name}.png",
                tile=tile,
                margin=margin,
                mode=mode,
                batch_size=batch_size,
                ensemble=ensemble,
                max_megapixels=max_megapixels,
                mask_path=mask_of.get(path.relative_to(folder).as_posix()),
            )
        except UnusableImage as e:
            done.skipped.append((str(path), e.reason))
            warn(f"skipped {path}: {e.reason}")
        except BaseException as e:
            # The images done so far stay usable: their tables are written before stopping.
            _write_tables(done)
            if not isinstance(e, Exception):
                raise
            # Tessera's own messages are one line that names the file: whole, however long
            # its paths; anything else is cut to one line of its start
            why = str(e) if isinstance(e, TesseraError) else _one_line(e, 200)
            raise TesseraError(
                f"image '{path}' failed ({type(e).__name__}: {why}); the "
                f"{len(done.records)} done before it are listed in {done.metrics_tsv}"
            ) from e
        else:
            done.records.append(record)
    _write_tables(done)
    if not done.records:
        if source.is_file():
            raise TesseraError(f"cannot use '{source}': {done.skipped[0][1]}")
        why = f"{len(done.skipped)} skipped, see {done.skipped_tsv}" if done.skipped else "no files"
        raise TesseraError(f"no usable image in '{source}' ({why})")
    return done


TABLES = ("metrics.tsv", "skipped.tsv")


def check_masks(summary, masks):
    """Refuse a masks folder that is not one, or masks for a model that was not told of holes
    (it would take the painted gray for part of the photo)."""
    masks = Path(masks)
    if not masks.is_dir():
        what = "is a file" if masks.exists() else "does not exist"
        raise TesseraError(f"masks folder '{masks}' {what}: give the folder of the mask images")
    if not told_of_holes(summary["task"]):
        raise TesseraError(
            f"masks '{masks}' given, but this model was not trained to fill holes it is told of "
            "(task.degradations with holes, mask: true): leave the masks out"
        )


def check_output(source, out_dir, overwrite=False):
    """Refuse an output folder that cannot take the results, before Keras or the model is loaded:
    the input's own folder (the outputs would be read back as inputs), a file, a folder that
    cannot be made or written to, or one holding the tables of an earlier run (unless overwrite).
    Makes the folder."""
    source, out_dir = Path(source), Path(out_dir)
    if not source.exists():
        raise TesseraError(f"input '{source}' does not exist")
    _not_the_input_folder(source, out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TesseraError(f"output folder '{out_dir}' is a file: choose a folder to write to")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TesseraError(f"output folder '{out_dir}' cannot be made: {_one_line(e)}") from None
    try:
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise TesseraError(f"output folder '{out_dir}' cannot be written: {_one_line(e)}") from None
    earlier = [name for name in TABLES if (out_dir / name).exists()]
    if earlier and not overwrite:
        raise TesseraError(
            f"output folder '{out_dir}' already holds {' and '.join(earlier)} of an earlier run: "
            "choose another folder, or overwrite them (--overwrite)"
        )


def _not_the_input_folder(source, out_dir):
    # Outputs written beside the images would be read back as inputs by the next run.
    folder = source.parent if source.is_file() else source
    if out_dir.resolve() == folder.resolve():
        what = "the input folder" if folder == source else f"the folder of input '{source}'"
        raise TesseraError(
            f"output folder '{out_dir}' is {what}: choose another one, so that outputs are not "
            "mixed with the images"
        )


def _write_tables(done):
    tables = (
        (done.metrics_tsv, pd.DataFrame(done.records, columns=None if done.records else ["image"])),
        (done.skipped_tsv, pd.DataFrame(done.skipped, columns=["path", "reason"])),
    )
    for path, table in tables:
        write_tsv(table, path)


def inputs(source, out_dir, recursive=True, leave_out=()):
    """The images to apply a model to, found as the workflow finds them: (folder, {image id: path
    inside the folder}, [(path inside the folder, reason skipped)]). source is one image file (its
    folder is then its parent) or a folder; the folders in leave_out are not read."""
    source, out_dir = Path(source), Path(out_dir)
    if source.exists():
        _not_the_input_folder(source, out_dir)
    if source.is_file():
        return source.parent, {image_id(source.name): source.name}, []
    if not source.is_dir():
        raise TesseraError(f"input '{source}' is neither an image file nor a folder")
    # Outputs written inside the input folder must not become inputs of the next run.
    try:
        inside = out_dir.resolve().relative_to(source.resolve()).as_posix()
    except ValueError:
        inside = None
    found, skipped = {}, []
    for entry in discover(source, recursive, leave_out):
        if inside and (entry.path == inside or entry.path.startswith(inside + "/")):
            continue
        if entry.image_id is None:
            skipped.append((entry.path, entry.reason))
        else:
            found[entry.image_id] = entry.path
    return source, found, skipped


def _one_line(error, limit=None):
    text = " ".join(str(error).split()) or type(error).__name__
    if limit and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def check_inputs(sources, names, out_tsv, max_megapixels=DEFAULT_MAX_MEGAPIXELS, threads=1):
    """Decode each image once and write a table of which can be used (status "ok") and why not:
    the workflow's apply jobs then only run on images that decode, as the patch stage admits
    only those. sources and names map each image id to its file and to its name in the folder."""
    from concurrent.futures import ThreadPoolExecutor

    def check(item):
        image, path = item
        try:
            load_image(path, max_megapixels=max_megapixels)
        except UnusableImage as e:
            return image, names[image], "skipped", e.reason
        return image, names[image], "ok", ""

    with ThreadPoolExecutor(threads) as pool:
        rows = list(pool.map(check, sources.items()))
    table = pd.DataFrame(rows, columns=["image", "path", "status", "reason"])
    write_tsv(table, out_tsv)
    return table


def write_tables(record_files, inputs_tsv, skipped, out_metrics, out_skipped):
    """metrics.tsv from the per-image records, skipped.tsv from the files discovery skipped and
    those that did not decode."""
    from tessera.split import read_table

    records = [json.loads(Path(f).read_text()) for f in record_files]
    write_tsv(pd.DataFrame(records), out_metrics)
    inputs = read_table(inputs_tsv)
    rows = list(skipped) + [(r.path, r.reason) for r in inputs.itertuples() if r.status != "ok"]
    write_tsv(pd.DataFrame(rows, columns=["path", "reason"]), out_skipped)
