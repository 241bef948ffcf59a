"""Split the patches into training and validation sets, by image (rule split)."""

from tessera import split
from tessera.jobs import job

with job(snakemake.log[0], "split"):
    p = snakemake.params.settings
    table = split.run(
        snakemake.input.infos,
        snakemake.input.patches,
        snakemake.output.train,
        snakemake.output.val,
        snakemake.output.tsv,
        val_fraction=p["val_fraction"],
        seed=p["seed"],
    )
    print(table.to_string())
