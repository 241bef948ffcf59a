"""Split the images into training and validation sides (rule split)."""

from tessera import split
from tessera.jobs import job

with job(snakemake.log[0], "split"):
    p = snakemake.params.settings
    table = split.run(
        snakemake.input.infos,
        snakemake.output.tsv,
        val_fraction=p["val_fraction"],
        seed=p["seed"],
    )
    print(table.to_string())
