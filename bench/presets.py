"""The default preset next to the blog post's network, each trained by its own config on the same
sample images and split: parameters, training patches/s, validation PSNR and SSIM.

Runs the workflow for each config file (only what is missing or out of date), then reads
summary.json and the report's metrics table of each.

    python bench/presets.py [--configs config/config.yaml config/seed.yaml]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def results_of(configfile):
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    own = yaml.safe_load((ROOT / configfile).read_text())
    return ROOT / own.get("results", base["results"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["config/config.yaml", "config/seed.yaml"])
    args = ap.parse_args()
    rows = []
    for configfile in args.configs:
        run = ["snakemake", "--cores", "all", "--configfile", configfile, "--quiet", "all"]
        if subprocess.run(run, cwd=ROOT).returncode:
            sys.exit(f"the workflow failed for {configfile}: see the logs named above")
        out = results_of(configfile)
        summary = json.loads((out / "model" / "summary.json").read_text())
        metrics = pd.read_csv(out / "report" / "metrics.tsv", sep="\t")
        val = metrics[metrics["split"] == "val"]
        rows.append(
            {
                "config": configfile,
                "preset": summary["preset"],
                "params": summary["params"],
                "non_trainable": summary["non_trainable_params"],
                "epochs": summary["epochs"],
                "patches_per_s": summary["patches_per_s"],
                "train_wall_s": summary["wall_s"],
                "val_psnr": round(val["psnr"].mean(), 2),
                "val_ssim": round(val["ssim"].mean(), 4),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
