"""Rebuild one whole image tile by tile with the trained model (rule reconstruct)."""

from tessera import backend
from tessera.jobs import job

with job(snakemake.log[0], "reconstruct"), backend.shared_gpu():
    # imported once this job's GPU is set: the framework reads CUDA_VISIBLE_DEVICES at start
    from tessera import reconstruct

    p = snakemake.params.settings
    backend.configure(snakemake.threads)
    record = reconstruct.run(
        snakemake.input.model,
        snakemake.input.summary,
        snakemake.input.image,
        snakemake.wildcards.image,
        snakemake.output.png,
        snakemake.output.metrics,
        tile=p["tile"],
        margin=p["margin"],
        mode=p["mode"],
        batch_size=p["batch_size"],
        ensemble=p["ensemble"],
        task=snakemake.params.task,
        max_megapixels=snakemake.params.max_megapixels,
        target_path=snakemake.input.target or None,
        model_file=snakemake.params.model_file,
    )
    print(record)
