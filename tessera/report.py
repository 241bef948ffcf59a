"""Stage 5: one offline HTML page with the loss curve, per-image metrics and before/after galleries."""

import json
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from tessera.images import load_image

DIFF_GAIN = 4  # differences are faint; brightened so a reader can see where the errors are
COLLAPSE_RATIO = 0.2  # an output whose contrast is below this share of the input's has gone flat


def loss_table(history_tsv):
    return pd.read_csv(history_tsv, sep="\t")


def metrics_table(split_tsv, metric_files):
    split = pd.read_csv(split_tsv, sep="\t", keep_default_na=False)
    rows = [json.loads(Path(f).read_text()) for f in metric_files]
    table = pd.DataFrame(rows)
    table = split[["image", "path", "split"]].merge(table, on="image", how="inner")
    order = {"train": 0, "val": 1}
    table = table.sort_values(
        ["split", "image"], key=lambda c: c.map(order) if c.name == "split" else c
    )
    return table.reset_index(drop=True)


def means(table):
    cols = ["psnr", "ssim", "mse"]
    out = table.groupby("split")[cols].mean()
    out.loc["all"] = table[cols].mean()
    return out.reset_index()


def plot_loss(table, out_png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for col, label in (("loss", "training"), ("val_loss", "validation")):
        if col in table:
            ax.plot(table["epoch"], table[col], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


def _thumb(array, path, size):
    from PIL import Image

    im = Image.fromarray(array)
    im.thumbnail((size, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=90)


def gallery(table, rebuilt_files, out_dir, report_dir, thumb):
    """Write before / after / difference images for each row; returns the page's entries."""
    entries = []
    images_dir = Path(out_dir)
    for row, rebuilt_png in zip(table.itertuples(), rebuilt_files):
        from PIL import Image

        before, _ = load_image(row.source)
        after = np.asarray(Image.open(rebuilt_png).convert("RGB"))
        diff = np.clip(
            np.abs(before.astype(np.int16) - after.astype(np.int16)) * DIFF_GAIN, 0, 255
        ).astype(np.uint8)
        names = {}
        for kind, array in (("before", before), ("diff", diff)):
            full = images_dir / f"{row.image}.{kind}.png"
            full.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(full)
            names[kind] = full
        names["after"] = Path(rebuilt_png)
        entry = {"image": row.image, "path": row.path, "split": row.split, "psnr": row.psnr}
        for kind, full in names.items():
            small = images_dir / f"{row.image}.{kind}.thumb.jpg"
            _thumb(np.asarray(Image.open(full).convert("RGB")), small, thumb)
            entry[kind] = _href(full, report_dir)
            entry[kind + "_thumb"] = _href(small, report_dir)
        entries.append(entry)
    return entries


def _href(path, report_dir):
    return quote(os.path.relpath(path, report_dir).replace(os.sep, "/"))


def warnings_for(table, summary):
    out = []
    ratio = table.loc[table.split == "val", "contrast_ratio"]
    if len(ratio) and ratio.mean() < COLLAPSE_RATIO:
        out.append(
            f"the reconstructions have gone flat: their contrast is {ratio.mean():.0%} of the inputs' "
            "on the validation images (the 'flat gray' failure); train longer or lower the learning rate"
        )
    if summary.get("stopped_by_budget"):
        out.append(
            f"training stopped after {summary['epochs']} epochs at its time budget (train.max_minutes)"
        )
    return out


def build(history_tsv, summary_json, split_tsv, items, skipped, config, thumbnail, out_dir):
    """Write index.html, loss.tsv, metrics.tsv, loss.png and the gallery images into out_dir.

    items: one dict per reconstructed image with its "image" id, "source" file, "metrics" JSON and
    "rebuilt" PNG; skipped: (path, reason) pairs found before any job ran.
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = json.loads(Path(summary_json).read_text())
    losses = loss_table(history_tsv)
    losses.to_csv(out / "loss.tsv", sep="\t", index=False)
    plot_loss(losses, out / "loss.png")

    table = metrics_table(split_tsv, [item["metrics"] for item in items])
    table.to_csv(out / "metrics.tsv", sep="\t", index=False)
    by_id = {item["image"]: item for item in items}
    table["source"] = [by_id[i]["source"] for i in table.image]
    entries = gallery(
        table, [by_id[i]["rebuilt"] for i in table.image], out / "images", out, thumbnail
    )

    split = pd.read_csv(split_tsv, sep="\t", keep_default_na=False)
    skipped_rows = [{"path": p, "reason": r} for p, r in skipped]
    skipped_rows += [
        {"path": r.path, "reason": r.reason} for r in split[split.split == "skipped"].itertuples()
    ]

    env = Environment(loader=PackageLoader("tessera"), autoescape=select_autoescape())
    page = env.get_template("report.html.j2").render(
        summary=summary,
        losses=losses.to_dict("records"),
        rows=table.to_dict("records"),
        means=means(table).to_dict("records"),
        gallery=entries,
        skipped=skipped_rows,
        warnings=warnings_for(table, summary),
        config_text=json.dumps(config, indent=2, ensure_ascii=False),
        diff_gain=DIFF_GAIN,
    )
    (out / "index.html").write_text(page)
    return out / "index.html"
