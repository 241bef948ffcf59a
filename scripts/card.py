"""Write the model card beside the model (rule card)."""

from tessera import card
from tessera.jobs import job

with job(snakemake.log[0], "card"):
    text = card.write(
        snakemake.output.md,
        snakemake.input.summary,
        snakemake.input.model,
        snakemake.input.split,
        snakemake.input.metrics,
        snakemake.input.baselines,
        tiling=snakemake.params.tiling,
        data=snakemake.params.data,
        folder=snakemake.params.folder,
    )
    print(text)
