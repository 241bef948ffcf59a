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
        description="Tessera: a convolutional image autoencoder trained on patches by the "
        "Snakemake workflow, applied to whole images tile by tile.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    apply = commands.add_parser(
        "apply",
        help="run a trained model on an image or a folder of images",
        description="Run a model trained by the workflow on an image, or on every image of a "
        "folder, at full size and tiled as the workflow rebuilds images. Writes OUTPUT/<image "
        "id>.png for each image (its width and height), OUTPUT/metrics.tsv and "
        "OUTPUT/skipped.tsv; an OUTPUT holding those tables is refused without --overwrite. A denoising model is given each image as it is; a reconstructing "
        "model is also measured against it (PSNR, SSIM, MSE, seam ratio).",
        epilog="example: python -m tessera apply results/model/model.keras photos/ rebuilt/",
    )
    apply.add_argument("model", metavar="MODEL", help="the model.keras the workflow trained")
    apply.add_argument("input", metavar="INPUT", help="an image file, or a folder of images")
    apply.add_argument("output", metavar="OUTPUT", help="the folder to write to (made if needed)")
    apply.add_argument(
        "--summary",
        metavar="PATH",
        help="the model's summary.json (default: summary.json next to MODEL)",
    )
    apply.add_argument(
        "--model-file",
        metavar="PATH",
        help="for a model trained with a network of one's own (model.file), the Python file that "
        "builds it: its code runs, so it runs only when named here (as Keras' safe_mode=False), "
        "and only if it is the code the model was trained with (default: refuse such a model)",
    )
    apply.add_argument(
        "--tile",
        type=_positive_int,
        default=128,
        metavar="PIXELS",
        help="tile side in pixels, a multiple of the model's size multiple (default: %(default)s)",
    )
    apply.add_argument(
        "--margin",
        type=_margin,
        metavar="PIXELS",
        help="pixels of each tile's border that are computed but not kept (default: the model's "
        "receptive radius, rounded up to a multiple of half its size multiple)",
    )
    apply.add_argument(
        "--mode",
        choices=("crop", "blend", "naive"),
        default="crop",
        help="crop keeps each tile's centre, blend weights overlapping tiles, naive tiles "
        "without overlap and shows seams (default: %(default)s)",
    )
    apply.add_argument(
        "--batch-size",
        type=_positive_int,
        default=8,
        metavar="N",
        help="tiles per model call (default: %(default)s)",
    )
    apply.add_argument(
        "--ensemble",
        action="store_true",
        help="average the outputs over the 8 flips and quarter turns of each image, 8 times "
        "slower (default: off)",
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
    return top


def run_apply(args):
    from tessera import apply, models

    # Checked before TensorFlow starts, so a wrong path is reported at once.
    _, summary = apply.read_summary(args.model, args.summary)
    models.refuse_unnamed_file(args.model, summary, args.model_file)
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
    )
    written = len(done.records)
    skipped = f"{len(done.skipped)} skipped, listed in {done.skipped_tsv}"
    print(
        f"tessera apply: wrote {written} image{'s' if written != 1 else ''} to {done.out_dir} "
        f"({skipped}); metrics in {done.metrics_tsv}"
    )
    return 0


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
        except BaseException:
            failed = True
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
