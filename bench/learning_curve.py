"""What more buys: config/upscale.yaml and config/jpeg.yaml trained for longer and on more photos,
each scored on the same held-out photos against the best classical method for its task.

    python bench/learning_curve.py [--configs upscale jpeg] [--minutes 2.5 5 10 20]
                                   [--folders samples photos] [--out DIR]
                                   [--png docs/learning_curve.png] [--plot-only]

Two folders: the seven sample photos (resources/sample_images), and the thirteen of
resources/photos (those seven and six more: every photograph and texture of scikit-image's data
whose licence it documents). Each (config, folder) runs as one Snakemake workflow whose variants
are the budgets, under DIR (default bench/out/learning). Both hold out the same two photos,
astronaut.png and coffee.png (split seed 169 puts them alone on the validation side of either
folder), and every figure is the mean over those two: the network's PSNR minus the best
classical method's. Prints the table, writes it as learning.tsv beside the runs (rows of earlier
invocations with other configs, folders or budgets are kept, so a curve can be taken in parts),
and plots gain against minutes, one line per folder, to --png (a config measured at one budget
only is left out of the plot). --plot-only plots the table again without training.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.recipe import scores  # noqa: E402
from tessera.files import atomic, write_tsv  # noqa: E402

SAMPLES = REPO / "resources" / "sample_images"
PHOTOS = REPO / "resources" / "photos"
SPLIT_SEED = 169  # astronaut.png and coffee.png alone held out, in either folder
HELD_OUT = ["astronaut.png", "coffee.png"]
FOLDERS = {"samples": SAMPLES, "photos": PHOTOS}


def run(config, folder, label, minutes, out):
    ready = REPO / "config" / f"{config}.yaml"
    where = out / f"{config}-{label}"
    variants = {f"{m:g}min": {"train": {"max_minutes": m}} for m in minutes}
    extra = where / "variants.yaml"
    where.mkdir(parents=True, exist_ok=True)
    extra.write_text(
        yaml.safe_dump(
            {
                "images": str(folder),
                "split": {"seed": SPLIT_SEED},
                "results": str(where / "results"),
                "logs": str(where / "logs"),
                "variants": variants,
            }
        )
    )
    cmd = [sys.executable, "-m", "snakemake", "--cores", "all", "-q", "--configfile"]
    subprocess.run([*cmd, str(ready), str(extra)], cwd=REPO, check=True)
    return where / "results", variants


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["upscale", "jpeg"])
    ap.add_argument("--minutes", nargs="+", type=float, default=[2.5, 5, 10, 20])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "learning")
    ap.add_argument("--png", type=Path, default=REPO / "docs" / "learning_curve.png")
    ap.add_argument("--folders", nargs="+", default=["samples", "photos"], choices=FOLDERS)
    ap.add_argument(
        "--plot-only", action="store_true", help="plot DIR/learning.tsv again, training nothing"
    )
    args = ap.parse_args()
    out = args.out.resolve()
    if args.plot_only:
        show(pd.read_csv(out / "learning.tsv", sep="\t"), args.png)
        return
    rows = []
    for config in args.configs:
        for label in args.folders:
            folder = FOLDERS[label]
            results, variants = run(config, folder, label, args.minutes, out)
            for name, change in variants.items():
                s = scores(results, name, keep=HELD_OUT)
                assert s["images"] == HELD_OUT, s["images"]
                rows.append(
                    {
                        "config": config,
                        "photos": s["train images"] + len(HELD_OUT),
                        "minutes": change["train"]["max_minutes"],
                        "epochs": s["epochs"],
                        "psnr": s["psnr"],
                        "best classical": s["best classical"],
                        "gain": s["psnr"] - s["classical psnr"],
                    }
                )
    table = pd.DataFrame(rows)
    # runs of other invocations (other configs, folders or budgets) stay in the table
    key = ["config", "photos", "minutes"]
    if (out / "learning.tsv").exists():
        earlier = pd.read_csv(out / "learning.tsv", sep="\t")
        table = pd.concat([earlier, table]).drop_duplicates(key, keep="last")
    table = table.sort_values(key)
    write_tsv(table, out / "learning.tsv")  # read back by the next run: never half-written
    show(table, args.png)


def show(table, png):
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    plot(table, png)


def plot(table, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # a curve needs two budgets: a config measured at one only stays in the table, not the plot
    configs = [
        c for c in dict.fromkeys(table.config) if table[table.config == c].minutes.nunique() > 1
    ]
    if not configs:
        print("no config has two budgets yet: nothing to plot")
        return
    fig, axes = plt.subplots(1, len(configs), figsize=(5 * len(configs), 3.6), dpi=100)
    for ax, config in zip(list(axes) if len(configs) > 1 else [axes], configs):
        part = table[table.config == config]
        for photos, line in part.groupby("photos"):
            ax.plot(line.minutes, line.gain, marker="o", label=f"{photos} photos")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(set(part.minutes)), [f"{m:g}" for m in sorted(set(part.minutes))])
        ax.set_xlabel("training budget (minutes, 2-core CPU)")
        ax.set_ylabel("dB over the best classical method")
        ax.set_title(f"config/{config}.yaml")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic(png) as tmp:  # the docs' picture: never half-written under its name
        fig.savefig(tmp)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
