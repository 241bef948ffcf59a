"""Which parts of the training recipe win: each ready config trained as shipped and with each
switch of the recipe turned the other way, the same wall-clock budget each, on the same CPU, and
scored on its validation photos against the best classical method for its task.

    python bench/recipe.py [--configs upscale jpeg inpaint denoise paired] [--minutes M]
                           [--switches loss optimizer ema keep warmup clipnorm] [--out DIR]

Each config runs as one Snakemake workflow whose variants are the switches (they share the
patches, split and baselines), under DIR/<config>/ (default bench/out/recipe). A variant's
training gets the config's own budget unless --minutes is given. Prints one table per config:
the variant's validation PSNR (mean over the validation photos; inside the holes for inpainting),
the damaged input's (for upscale: its bicubic enlargement), the best classical method's and the
margin over it, and the worst photo's gain over the input.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tessera.report import AUTOENCODER  # noqa: E402

READY = ("upscale", "jpeg", "inpaint", "denoise", "paired")

# switch -> (train setting, value when the ready config leaves it off or at its default)
SWITCHES = {
    "loss": ("loss", "mse"),
    "optimizer": ("optimizer", "adam"),
    "ema": ("ema", None),
    "keep": ("keep", "last"),
    "warmup": ("warmup", 0),
    "clipnorm": ("clipnorm", None),
}
# what a switch is turned to where the ready config has it off
SWITCHED_ON = {
    "loss": "charbonnier",
    "optimizer": "adamw",
    "ema": 0.999,
    "keep": "best",
    "warmup": 500,
    "clipnorm": 0.1,
}


def variants(ready, switches):
    """{variant name: its train overrides}: the ready config, then each switch turned over."""
    train = ready.get("train", {})
    out = {"as-shipped": {}}
    for name in switches:
        key, off = SWITCHES[name]
        now = train.get(key, {"keep": "best"}.get(key, off))
        other = SWITCHED_ON[name] if now == off else off
        out[f"{name}={other}"] = {"train": {key: other}}
    return out


def run(name, minutes, switches, out):
    ready_path = REPO / "config" / f"{name}.yaml"
    ready = yaml.safe_load(ready_path.read_text())
    folder = out / name
    overrides = {
        "results": str(folder / "results"),
        "logs": str(folder / "logs"),
        "variants": variants(ready, switches),
    }
    if minutes:
        overrides["train"] = {"max_minutes": minutes}
    folder.mkdir(parents=True, exist_ok=True)
    extra = folder / "variants.yaml"
    extra.write_text(yaml.safe_dump(overrides))
    if name == "paired" and not (REPO / "results" / "pairs" / "clean").is_dir():
        subprocess.run([sys.executable, "resources/make_pairs.py"], cwd=REPO, check=True)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "all", "-q", "--configfile"]
    subprocess.run([*cmd, str(ready_path), str(extra)], cwd=REPO, check=True)
    return table(folder / "results", overrides["variants"])


def scores(results, variant, keep=None):
    """Mean validation PSNR of the network, of its input and of each classical method (inside
    the holes, where the task made holes), over the validation photos (those of `keep` only,
    when given)."""
    report = results / variant / "report"
    metrics = pd.read_csv(report / "metrics.tsv", sep="\t")
    metrics = metrics[(metrics.split == "val") & (metrics.image.isin(keep) if keep else True)]
    holes = "psnr_holes" in metrics
    base = pd.read_csv(report / "baselines.tsv", sep="\t")
    base = base[base.image.isin(metrics.image) & (base.method != AUTOENCODER)]
    column = "psnr_holes" if holes else "psnr"
    methods = base.groupby("method")[column].mean()
    inputs = [m for m in methods.index if m.endswith(" input")]
    summary = yaml.safe_load((results / variant / "model" / "summary.json").read_text())
    return {
        "images": sorted(metrics.image),
        "train images": summary["train_images"],
        "epochs": summary["epochs"],
        "kept": summary.get("kept_epoch"),
        "psnr": metrics[column].mean(),
        "input": methods[inputs[0]] if inputs else float("nan"),
        "best classical": methods.idxmax(),
        "classical psnr": methods.max(),
        "worst gain": (metrics[column] - metrics[f"{column}_input"]).min(),
    }


def table(results, names):
    rows = {name: scores(results, name) for name in names}
    frame = pd.DataFrame(rows).T.drop(columns=["images", "train images"])
    frame["margin"] = frame["psnr"].astype(float) - frame["classical psnr"].astype(float)
    return frame


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=list(READY), choices=READY)
    ap.add_argument("--minutes", type=float, help="training budget of every variant")
    ap.add_argument("--switches", nargs="*", default=list(SWITCHES), choices=list(SWITCHES))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "recipe")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    for name in args.configs:
        frame = run(name, args.minutes, args.switches, args.out.resolve())
        print(f"\n## {name}" + (" (PSNR inside the holes)" if name == "inpaint" else ""))
        print(frame.to_string(float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
