"""Score classical methods on every usable image (rule baselines)."""

from tessera import baselines
from tessera.jobs import job

with job(snakemake.log[0], "baselines"):
    table, chosen = baselines.run(
        snakemake.input.split,
        dict(zip(snakemake.params.images, snakemake.input.sources)),
        snakemake.output.metrics,
        snakemake.output.parameters,
        task=snakemake.params.task,
        max_megapixels=snakemake.params.max_megapixels,
        threads=snakemake.threads,
        targets=dict(zip(snakemake.params.images, snakemake.input.targets)),
    )
    print(f"parameters chosen on the training images: {chosen}")
    print(table.to_string())
