"""Stage 5: one offline HTML page with the loss curve, per-image metrics, baselines, the seams of
naive tiling, before/after galleries, skipped inputs and provenance."""

import json
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from tessera import tasks
from tessera.files import atomic, write_text, write_tsv
from tessera.images import load_image
from tessera.measure import collapsed
from tessera.split import read_table

DIFF_GAIN = 4  # differences are faint; brightened so a reader can see where the errors are
AUTOENCODER = "autoencoder"


def loss_table(history_tsv):
    return pd.read_csv(history_tsv, sep="\t")


def metrics_table(split_tsv, metric_files):
    split = read_table(split_tsv)
    rows = [json.loads(Path(f).read_text()) for f in metric_files]
    table = pd.DataFrame(rows)
    table = split[["image", "path", "split"]].merge(table, on="image", how="inner")
    order = {"train": 0, "val": 1}
    table = table.sort_values(
        ["split", "image"], key=lambda c: c.map(order) if c.name == "split" else c
    )
    return table.reset_index(drop=True)


def means(table, cols=("psnr", "ssim", "mse")):
    cols = [c for c in cols if c in table]
    out = table.groupby("split")[cols].mean()
    out.loc["all"] = table[cols].mean()
    return out.reset_index()


def comparison(table, baselines):
    """One row per (image, method), the autoencoder included, and the mean per split and method."""
    cols = ["image", "split", "psnr", "ssim"] + (["psnr_holes"] if "psnr_holes" in table else [])
    ours = table[cols].assign(method=AUTOENCODER)
    rows = pd.concat([ours, baselines[[*cols[:2], "method", *cols[2:]]]])
    if "bytes_per_pixel" in baselines:
        rows = rows.merge(
            baselines[["image", "method", "bytes_per_pixel"]], on=["image", "method"], how="left"
        )
    mean = rows.groupby(["split", "method"], sort=False).mean(numeric_only=True).reset_index()
    return rows, mean


def our_name(kind):
    """What the report calls the trained model: an autoencoder where it rebuilds its input."""
    return AUTOENCODER if kind.input_is_target else "network"


def verdicts(rows, summary):
    """Plain sentences: against which method the autoencoder wins or loses, on which images."""
    out = []
    kind = tasks.get(summary.get("task"))
    harmed = None if kind.input_is_target else f"{kind.input_word} input"
    ours_name = our_name(kind)
    split = "val" if (rows.split == "val").any() else "train"
    part = rows[rows.split == split]
    ours = part[part.method == AUTOENCODER].set_index("image").psnr
    for method, group in part[part.method != AUTOENCODER].groupby("method", sort=False):
        theirs = group.set_index("image").psnr.reindex(ours.index)
        gain = float((ours - theirs).mean())
        wins = int((ours > theirs).sum())
        side = "validation" if split == "val" else "training"
        verb = "beats" if gain > 0 else "loses to"
        sentence = (
            f"On the {side} images the {ours_name} {verb} {method} by {abs(gain):.2f} dB mean PSNR "
            f"(better on {wins} of {len(ours)} images)"
        )
        size = group.get("bytes_per_pixel")
        if size is not None and size.notna().any() and summary.get("latent_values_per_pixel"):
            sentence += (
                f"; {method} stores {size.mean():.3f} bytes per pixel, the autoencoder's code "
                f"{summary['latent_values_per_pixel']:.3f} values per pixel before any entropy coding"
            )
        out.append(sentence + ".")
        if "psnr_holes" in group:
            inside = float(
                (
                    part[part.method == AUTOENCODER].set_index("image").psnr_holes
                    - group.set_index("image").psnr_holes.reindex(ours.index)
                ).mean()
            )
            out.append(
                f"Inside the holes alone the {ours_name} {'beats' if inside > 0 else 'loses to'} "
                f"{method} by {abs(inside):.2f} dB mean PSNR."
            )
        if method == harmed and gain < 0:
            out.append(
                f"The network harms its inputs: on the {side} images its output is "
                f"{-gain:.2f} dB worse than the {method} it was given (worse on "
                f"{len(ours) - wins} of {len(ours)} images)."
            )
    return out


def plot_curves(curves, ylabel, out_png):
    """Loss curves ({label: (epochs, values)}) on one log-scale plot, written to out_png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for label, (x, y) in curves.items():
        ax.plot(x, y, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic(out_png) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def plot_loss(table, out_png):
    curves = {
        label: (table["epoch"], table[col])
        for col, label in (("loss", "training"), ("val_loss", "validation"))
        if col in table
    }
    plot_curves(curves, "loss", out_png)


def _save(array, path):
    from PIL import Image

    with atomic(path) as tmp:
        Image.fromarray(array).save(tmp)
    return path


def _thumb(array, path, size):
    from PIL import Image

    im = Image.fromarray(array)
    im.thumbnail((size, size))
    with atomic(path) as tmp:
        im.save(tmp, quality=90)


def _diff(a, b):
    d = np.abs(a.astype(np.int16) - b.astype(np.int16)) * DIFF_GAIN
    return np.clip(d, 0, 255).astype(np.uint8)


def _href(path, report_dir):
    return quote(os.path.relpath(path, report_dir).replace(os.sep, "/"))


# caption -> the word in the picture's file name
KINDS = {
    "before": "before",
    "noisy input": "noisy",
    "damaged input": "damaged",
    "bicubic": "bicubic",
    "after": "after",
    "difference": "diff",
    "naive tiling": "naive",
    "naive minus ours": "seams",
}

# each task's input picture ("damaged input") -> its word ("damaged")
INPUT_SLUGS = {
    t.input_caption: t.input_caption.split()[0] for t in tasks.REGISTRY.values() if t.input_caption
}


def _figure(kind, array, full, image_id, images_dir, report_dir, thumb):
    """One gallery picture: the full-size file (written unless it exists) and its thumbnail."""
    from PIL import Image

    slug = KINDS.get(kind) or INPUT_SLUGS.get(kind, "after")
    if array is None:
        array = np.asarray(Image.open(full).convert("RGB"))
    else:
        full = _save(array, images_dir / f"{image_id}.{slug}.png")
    small = images_dir / f"{image_id}.{slug}.thumb.jpg"
    _thumb(array, small, thumb)
    return {"kind": kind, "full": _href(full, report_dir), "thumb": _href(small, report_dir)}


def gallery(table, task, out_dir, report_dir, thumb, max_megapixels=None):
    """Before / [noisy input] / after / difference pictures for each row of the metrics table."""
    from PIL import Image

    kind = tasks.get(task)
    entries = []
    for row in table.itertuples():
        image, _ = load_image(row.source, max_megapixels=max_megapixels)
        before = kind.truth(image, task or {})
        after = np.asarray(Image.open(row.rebuilt).convert("RGB"))
        given = tasks.model_input(image, row.image, task)
        pictures = [("before", before, None)]
        if row.damaged:  # a pair: the damaged image is a file of its own
            damaged, _ = load_image(row.damaged, max_megapixels=max_megapixels)
            pictures.append((kind.input_caption, damaged, None))
        elif given is not image:
            pictures.append((kind.input_caption, given, None))
            pictures += [(c, a, None) for c, a in kind.pictures(given, task or {})]
        pictures += [("after", None, Path(row.rebuilt)), ("difference", _diff(before, after), None)]
        entries.append(
            {
                "image": row.image,
                "path": row.path,
                "split": row.split,
                "psnr": row.psnr,
                "figures": [
                    _figure(k, a, f, row.image, Path(out_dir), report_dir, thumb)
                    for k, a, f in pictures
                ],
            }
        )
    return entries


def seams(row, naive_png, naive_json, out_dir, report_dir, thumb):
    """The configured tiling next to the blog post's naive tiling on one image (rebuilt both ways
    by the reconstruction stage), with both seam ratios, so a reader sees what the seams were and
    that they are gone."""
    from PIL import Image

    naive = np.asarray(Image.open(naive_png).convert("RGB"))
    ours = np.asarray(Image.open(row.rebuilt).convert("RGB"))
    images_dir = Path(out_dir)
    return {
        "image": row.image,
        "path": row.path,
        "mode": row.mode,
        "naive_ratio": json.loads(Path(naive_json).read_text())["seam_ratio"],
        "ours_ratio": row.seam_ratio,
        "figures": [
            _figure(
                "naive tiling", None, Path(naive_png), row.image, images_dir, report_dir, thumb
            ),
            _figure(
                f"{row.mode} tiling",
                None,
                Path(row.rebuilt),
                row.image,
                images_dir,
                report_dir,
                thumb,
            ),
            _figure(
                "naive minus ours",
                _diff(naive, ours),
                None,
                row.image,
                images_dir,
                report_dir,
                thumb,
            ),
        ],
    }


def warnings_for(table, summary):
    out = list(summary.get("flags", []))
    ratio = table.loc[table.split == "val", "contrast_ratio"]
    flat = collapsed(ratio.mean(), "the validation images") if len(ratio) else None
    out += [flat] if flat else []
    if summary.get("stopped_by_budget"):
        out.append(
            f"training stopped after {summary['epochs']} epochs at its time budget "
            "(train.max_minutes)"
        )
    return out


# Columns of a Snakemake benchmark file: wall seconds, peak resident memory (MB), CPU seconds.
BENCHMARK_COLUMNS = ("s", "max_rss", "cpu_time")


def stage_costs(stages, benchmark_files):
    """Where a run's time and memory went: per stage, its jobs, their summed wall and CPU seconds
    and the largest peak RSS (MB), from Snakemake's benchmark files (one per job, stages[i] being
    the stage of benchmark_files[i]); a last row sums every stage."""
    frames = []
    for stage, path in zip(stages, benchmark_files):
        bench = pd.read_csv(path, sep="\t")
        frames.append(pd.DataFrame({"stage": stage, **{k: bench[k] for k in BENCHMARK_COLUMNS}}))
    columns = ["stage", "jobs", "wall_s", "max_rss_mb", "cpu_s"]
    if not frames:
        return pd.DataFrame(columns=columns)
    jobs = pd.concat(frames, ignore_index=True)
    # "NA" where Snakemake could not measure (a job too short to sample)
    for k in BENCHMARK_COLUMNS:
        jobs[k] = pd.to_numeric(jobs[k], errors="coerce")
    table = (
        jobs.groupby("stage", sort=False)
        .agg(
            jobs=("s", "size"),
            wall_s=("s", "sum"),
            max_rss_mb=("max_rss", "max"),
            cpu_s=("cpu_time", "sum"),
        )
        .reset_index()
    )
    total = {
        "stage": "all",
        "jobs": len(jobs),
        "wall_s": jobs.s.sum(),
        "max_rss_mb": jobs.max_rss.max(),
        "cpu_s": jobs.cpu_time.sum(),
    }
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)[columns]


def template():
    from jinja2 import Environment, PackageLoader, select_autoescape

    # The page is named .html.j2, which select_autoescape() alone would not take for HTML: file
    # names like "<b>.png" must be shown, not parsed.
    env = Environment(loader=PackageLoader("tessera"), autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("report.html.j2")


def build(inputs, items, skipped, config, settings, out_dir, shown_image, compare=None, costs=None):
    """Write index.html, loss.tsv, metrics.tsv, baselines.tsv, loss.png and pictures into out_dir.

    inputs: paths of the stage's inputs (history, summary, split, baselines, baselines_parameters,
    and naive, naive_metrics: the naive tiling of shown_image); items: one dict per rebuilt image
    with its "image" id, "source" file, "metrics" JSON and "rebuilt" PNG; skipped: (path, reason)
    pairs found before any job ran; settings: thumbnail, max_megapixels; config: the whole
    configuration, shown for provenance; compare: a link to the page comparing the variants;
    costs: stage_costs of the jobs the report stands on.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = config["task"]
    summary = json.loads(Path(inputs["summary"]).read_text())
    losses = loss_table(inputs["history"])
    write_tsv(losses, out / "loss.tsv")
    plot_loss(losses, out / "loss.png")

    table = metrics_table(inputs["split"], [item["metrics"] for item in items])
    write_tsv(table, out / "metrics.tsv")
    by_id = {item["image"]: item for item in items}
    table["source"] = [by_id[i]["source"] for i in table.image]
    table["rebuilt"] = [by_id[i]["rebuilt"] for i in table.image]
    table["damaged"] = [by_id[i].get("damaged") for i in table.image]

    baselines = pd.read_csv(inputs["baselines"], sep="\t")
    rows, mean = comparison(table, baselines)
    write_tsv(rows, out / "baselines.tsv")
    chosen = json.loads(Path(inputs["baselines_parameters"]).read_text())["parameters"]

    images_dir, thumb = out / "images", settings["thumbnail"]
    entries = gallery(table, task, images_dir, out, thumb, settings.get("max_megapixels"))
    shown = next(table[table.image == shown_image].itertuples())
    seam = seams(shown, inputs["naive"], inputs["naive_metrics"], images_dir, out, thumb)

    split = read_table(inputs["split"])
    skipped_rows = [{"path": p, "reason": r} for p, r in skipped]
    skipped_rows += [
        {"path": r.path, "reason": r.reason} for r in split[split.split == "skipped"].itertuples()
    ]
    cols = ["psnr", "ssim", "mse", "seam_ratio"] + (
        ["psnr_input", "ssim_input"] if "psnr_input" in table else []
    )
    holes = "psnr_holes" in table
    cols += ["psnr_holes", "psnr_holes_input"] if holes else []
    kind = tasks.get(task)
    page = template().render(
        summary=summary,
        task=task,
        task_text=kind.describe(task),
        damaged=not kind.input_is_target,
        input_word=kind.input_word,
        output_word=kind.output_word,
        holes=holes,
        losses=losses.to_dict("records"),
        rows=table.drop(columns=["source", "rebuilt", "damaged"]).to_dict("records"),
        means=means(table, cols).to_dict("records"),
        methods=mean.to_dict("records"),
        per_image=rows.pivot_table(index=["split", "image"], columns="method", values="psnr")
        .reset_index()
        .to_dict("records"),
        method_names=[AUTOENCODER] + list(dict.fromkeys(baselines.method)),
        shown={AUTOENCODER: our_name(kind)},
        chosen=chosen,
        # the enlarging baselines are Pillow's resampling filters, the others scikit-image's
        library="Pillow" if kind.scale(task or {}) > 1 else "scikit-image",
        verdicts=verdicts(rows, summary),
        seams=seam,
        gallery=entries,
        skipped=skipped_rows,
        warnings=warnings_for(table, summary),
        config_text=json.dumps(config, indent=2, ensure_ascii=False),
        diff_gain=DIFF_GAIN,
        compare=compare,
        costs=[] if costs is None else costs.to_dict("records"),
    )
    write_text(out / "index.html", page)
    return out / "index.html"
