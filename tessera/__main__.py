"""The command line: python -m tessera COMMAND ... (python -m tessera --help lists the commands)."""

import argparse
import contextlib
import os
import sys
import tempfile
import traceback

# Before anything imports TensorFlow, which reads it once at start-up.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tessera import TesseraError, __version__  # noqa: E402
from tessera.images import DEFAULT_MAX_MEGAPIXELS  # noqa: E402

DEBUG = "TESSERA_DEBUG"


def _whole(least, what="a whole number"):
    """An argparse type: a whole number of at least `least`."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} must be {least} or more")
        return value

    return parse


_positive_int = _whole(1)
_margin = _whole(0, "a whole number of pixels")


def _megapixels(text):
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number or 'none'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0, or 'none' for no limit")
    return value


def parser():
    top = argparse.ArgumentParser(
        prog="tessera",
        description="Tessera: convolutional networks trained on image patches by the Snakemake "
        "workflow, applied to whole images tile by tile, exported for use anywhere.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _apply_command(commands)
    _export_command(commands)
    _describe_command(commands)
    return top


def _apply_command(commands):
    apply = commands.add_parser(
        "apply",
        help="run a trained model on an image or a folder of images",
        description="Run a model trained by the workflow on an image, or on every image of a "
        "folder, at full size and tiled as the workflow rebuilds images. Writes OUTPUT/<image "
        "id>.png for each image (its width and height), OUTPUT/metrics.tsv and "
        "OUTPUT/skipped.tsv; an OUTPUT holding those tables is refused without --overwrite. A "
        "denoising model is given each image as it is; a reconstructing model is also measured "
        "against it (PSNR, SSIM, MSE, seam ratio).",
        epilog="example: tessera apply results/model/model.keras photos/ rebuilt/",
    )
    apply.add_argument("model", metavar="MODEL", help="the model.keras the workflow trained")
    apply.add_argument("input", metavar="INPUT", help="an image file, or a folder of images")
    apply.add_argument("output", metavar="OUTPUT", help="the folder to write to (made if needed)")
    _summary_option(apply)
    _model_file_option(apply)
    _tiling_options(apply)
    apply.add_argument(
        "--masks",
        metavar="FOLDER",
        help="for a model that fills holes: a folder of mask images, white where a hole is, one "
        "per image at the same path whatever its extension (photo.jpg's mask is photo.png); "
        "a mask wins over the holes' gray, which stays the fallback for an image without one",
    )
    apply.add_argument(
        "--no-recursive",
        dest="recursive",
        action="store_false",
        help="read only the top level of a folder (default: subfolders too)",
    )
    apply.add_argument(
        "--max-megapixels",
        type=_megapixels,
        default=DEFAULT_MAX_MEGAPIXELS,
        metavar="N",
        help="skip larger images, a guard against decompression bombs; 'none' for no limit "
        "(default: %(default)s)",
    )
    apply.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an OUTPUT that holds the tables of an earlier run, replacing them and "
        "the images of the same names (default: refuse, naming the tables)",
    )
    apply.set_defaults(run=run_apply)


def _summary_option(command):
    command.add_argument(
        "--summary",
        metavar="PATH",
        help="the model's summary.json (default: summary.json next to MODEL)",
    )


def _tiling_options(command):
    command.add_argument(
        "--tile",
        type=_positive_int,
        default=128,
        metavar="PIXELS",
        help="tile side in pixels, a multiple of the model's size multiple (default: %(default)s)",
    )
    command.add_argument(
        "--margin",
        type=_margin,
        metavar="PIXELS",
        help="pixels of each tile's border that are computed but not kept (default: the model's "
        "receptive radius, rounded up to a multiple of half its size multiple)",
    )
    command.add_argument(
        "--mode",
        choices=("crop", "blend", "naive"),
        default="crop",
        help="crop keeps each tile's centre, blend weights overlapping tiles, naive tiles "
        "without overlap and shows seams (default: %(default)s)",
    )
    command.add_argument(
        "--batch-size",
        type=_positive_int,
        default=8,
        metavar="N",
        help="tiles per model call (default: %(default)s)",
    )
    command.add_argument(
        "--ensemble",
        action="store_true",
        help="average the outputs over the 8 flips and quarter turns of each image, 8 times "
        "slower (default: off)",
    )


def _export_command(commands):
    export = commands.add_parser(
        "export",
        help="write a trained model as ONNX, a TensorFlow SavedModel or TFLite",
        description="Write a model trained by the workflow for use without Tessera, through "
        "Keras' own model.export: float32, its input named 'image', (batch, height, width, 3) "
        "in 0..1, height and width left free. ONNX and SavedModel need the tensorflow (or jax) "
        "Keras backend, TFLite the tensorflow one. Says what one pass of the exported graph "
        "takes and how Tessera tiles the model.",
        epilog="example: tessera export results/model results/model/model.onnx",
    )
    export.add_argument(
        "model", metavar="MODEL", help="a model folder, or the model.keras the workflow trained"
    )
    export.add_argument("out", metavar="OUT", help="the file to write (a folder for savedmodel)")
    export.add_argument(
        "--format",
        choices=("onnx", "savedmodel", "tflite"),
        help="what to write (default: the one OUT's name says: .onnx or .tflite)",
    )
    _summary_option(export)
    _model_file_option(export)
    export.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it exists (default: refuse)"
    )
    export.set_defaults(run=run_export)


def _model_file_option(command):
    command.add_argument(
        "--model-file",
        metavar="PATH",
        help="for a model trained with a network of one's own (model.file), the Python file that "
        "builds it: its code runs, so it runs only when named here (as Keras' safe_mode=False), "
        "and only if it is the code the model was trained with (default: refuse such a model)",
    )


def _describe_command(commands):
    describe = commands.add_parser(
        "describe",
        help="list the networks and tasks, or describe a trained model",
        description="Without MODEL: the network presets with their arguments, and the tasks, "
        "as a config names them. With a model folder (or its model.keras): what the model does "
        "and how to tile, load and export it, from its summary.json.",
    )
    describe.add_argument(
        "model", metavar="MODEL", nargs="?", help="a model folder, or a model.keras"
    )
    _summary_option(describe)
    describe.set_defaults(run=run_describe)


def run_apply(args):
    from tessera import apply, models

    # Checked before TensorFlow starts, so a wrong path is reported at once.
    _, summary = apply.read_summary(args.model, args.summary)
    models.refuse_unnamed_file(args.model, summary, args.model_file)
    if args.masks is not None:
        apply.check_masks(summary, args.masks)
    apply.check_output(args.input, args.output, args.overwrite)
    with _native_stderr_quiet():
        import keras  # noqa: F401

    import tqdm

    def bar(items):
        # a bar over images on a terminal only: a log file gets the summary line
        return tqdm.tqdm(items, unit="image", file=sys.stderr, disable=not sys.stderr.isatty())

    done = apply.apply_folder(
        args.model,
        args.input,
        args.output,
        summary_path=args.summary,
        recursive=args.recursive,
        tile=args.tile,
        margin=args.margin,
        mode=args.mode,
        batch_size=args.batch_size,
        ensemble=args.ensemble,
        max_megapixels=args.max_megapixels,
        progress=bar,
        warn=lambda line: tqdm.tqdm.write(f"tessera apply: warning: {line}", file=sys.stderr),
        overwrite=args.overwrite,
        model_file=args.model_file,
        masks=args.masks,
    )
    written = len(done.records)
    skipped = f"{len(done.skipped)} skipped, listed in {done.skipped_tsv}"
    print(
        f"tessera apply: wrote {written} image{'s' if written != 1 else ''} to {done.out_dir} "
        f"({skipped}); metrics in {done.metrics_tsv}"
    )
    return 0


def run_export(args):
    from tessera import apply, export
    from tessera.api import keras_file

    # Checked before TensorFlow starts, so a wrong name or path is reported at once.
    fmt = export.format_for(args.out, args.format)
    export.check_output(args.out, args.overwrite)
    model_path = keras_file(args.model)
    apply.read_summary(model_path, args.summary)
    with _native_stderr_quiet():
        import keras

        from tessera import api

        export.check_backend(fmt, keras.config.backend())
        model = api.load(
            model_path, args.summary, network_file=args.model_file, precision="float32"
        )
        written = model.export(args.out, fmt, overwrite=args.overwrite)
    print(
        f"tessera export: wrote {written} ({fmt}): input '{export.INPUT_NAME}', float32 "
        "(batch, height, width, 3) in 0..1"
    )
    for line in export.passes(model.summary):
        print(f"tessera export: {line}")
    return 0


def run_describe(args):
    if args.model is None:
        print(registries())
        return 0
    from tessera import apply, card
    from tessera.api import keras_file

    model_path = keras_file(args.model)
    _, summary = apply.read_summary(model_path, args.summary)
    print(card.render(summary, model_path.parent, card.layers_in_archive(model_path)), end="")
    return 0


def registries():
    """The presets with their declared arguments and the tasks, as a config names them."""
    import inspect

    from tessera import models, tasks

    lines = ["Networks (model.preset; their arguments go beside it under model:):"]
    for name, preset in models.PRESETS.items():
        lines.append(f"  {name}: {preset.description}")
        lines.append(f"      arguments: {preset.arguments() or 'none'}")
    lines += ["  or a network of one's own: model.file (a Python file), model.function, model.args"]
    lines.append("Tasks (task.kind):")
    for kind, task in tasks.REGISTRY.items():
        doc = inspect.getmodule(type(task)).__doc__ or ""
        first = " ".join(doc.split()).split(". ")[0].split(": ", 1)[-1].rstrip(".")
        lines.append(f"  {kind}: {first}")
    return "\n".join(lines)


@contextlib.contextmanager
def _native_stderr_quiet():
    """TensorFlow's C++ start-up lines (oneDNN, CUDA) are written before its log level applies:
    hold back what file descriptor 2 receives meanwhile, and show it only if the import fails."""
    if os.environ.get(DEBUG) == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException as e:
            # a TesseraError is its own one line: TensorFlow's lines would only bury it
            failed = not isinstance(e, TesseraError)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))


def main(argv=None):
    args = parser().parse_args(argv)
    name = f"tessera {args.command}"
    try:
        return args.run(args)
    except TesseraError as e:
        print(f"{name}: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get(DEBUG) == "1":
            traceback.print_exc()
        message = " ".join(str(e).split())
        hint = "" if os.environ.get(DEBUG) == "1" else f" (set {DEBUG}=1 for the traceback)"
        print(f"{name}: unexpected {type(e).__name__}: {message}{hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
