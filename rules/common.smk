# Image discovery, output paths, input functions and code versions shared by every stage.
import os

from tessera import TesseraError, codeversion, images, settings


def results(path):
    # Every output path is built here, from one root, so that a run level can be added later.
    return f"{config['results']}/{path}"


def logs(path):
    return f"{config['logs']}/{path}"


def settings_of(section, *leave_out):
    """A config section for a rule's params, without its thread count: threads reach the job
    through `threads:` (and --set-threads), and changing them must not rerun anything. Keys that
    belong to another stage's work are left out too, so changing them does not rerun this one."""
    return {k: v for k, v in config[section].items() if k not in ("threads", *leave_out)}


def training_data():
    """What the training job needs to read the patches: how they were cut, and how many
    validation patches to use."""
    patches = config["patches"]
    return {
        "size": patches["size"],
        "stride": patches["stride"],
        "sampling": patches["sampling"],
        "max_val_patches": config["split"]["max_val_patches"],
    }


def shown_config():
    """The configuration as the report shows it: every setting that shapes a result, so not the
    thread counts (they change nothing but speed, and must not rerun the report)."""
    return {k: settings_of(k) if isinstance(v, dict) else v for k, v in config.items()}


def code(stage):
    """A hash of the tessera modules the stage's script imports: editing them reruns the stage."""
    return codeversion.code_hash(os.path.join(workflow.basedir, "scripts", f"{stage}.py"))


def stop(error):
    """A mistake the user can fix, found before any job runs: one line, exit status 1."""
    # SystemExit, not WorkflowError: Snakemake would add its header and a traceback of this file.
    raise SystemExit(f"tessera: error: {error}")


def _discover():
    try:
        settings.check(config)
        found = images.discover(config["images"], config["recursive"])
    except TesseraError as e:
        stop(e)
    usable = {f.image_id: f.path for f in found if f.image_id}
    if not usable:
        stop(
            f"no image files in '{config['images']}' (looked for "
            f"{', '.join(sorted(images.IMAGE_EXTENSIONS))}); point 'images' at a folder of images"
        )
    return usable, [(f.path, f.reason) for f in found if f.reason]


IMAGES, SKIPPED = _discover()


def source_of(image):
    path = os.path.join(config["images"], IMAGES[image])
    if "{" in path:
        # Snakemake reads "{word}" in an input path as a wildcard, even in a path an input function
        # returns, and has no escape for it: such a file is reached through a link with a safe name.
        return _link(path, results(f".sources/{image}"))
    return path


def _link(target, link):
    target = os.path.abspath(target)
    if not os.path.islink(link) or os.readlink(link) != target:
        os.makedirs(os.path.dirname(link), exist_ok=True)
        tmp = f"{link}.{os.getpid()}.tmp"
        os.symlink(target, tmp)
        os.replace(tmp, link)  # atomic, should another Snakemake parse this at the same time
    return link


def source(wildcards):
    return source_of(wildcards.image)


def usable_images(wildcards):
    """Images that decoded, read from the split table once the split checkpoint has run."""
    import pandas as pd

    table = pd.read_csv(checkpoints.split.get().output.tsv, sep="\t", keep_default_na=False)
    return [i for i in table.image[table.split != "skipped"] if i in IMAGES]
