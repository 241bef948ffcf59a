"""Cut one image into patches (rule patches)."""

from tessera import patches
from tessera.jobs import job, warn

with job(snakemake.log[0], "patches"):
    p = snakemake.params.settings
    info = patches.run(
        snakemake.input.image,
        snakemake.wildcards.image,
        snakemake.output.patches,
        snakemake.output.info,
        size=p["size"],
        stride=p["stride"],
        max_patches=p["max_per_image"],
        seed=p["seed"],
        name=snakemake.params.name,
        max_megapixels=snakemake.params.max_megapixels,
        sampling=p["sampling"],
        target_path=snakemake.input.target or None,
        target_name=snakemake.params.target_name,
    )
    print(info)
    if info["status"] != "ok":
        warn("patches", f"skipped {info['path']}: {info['reason']}")
    for note in info.get("notes", []):
        warn("patches", f"{info['path']}: {note}")
