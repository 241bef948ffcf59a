"""Train the model on the training patches (rule train)."""

from tessera import backend
from tessera.jobs import job

with job(snakemake.log[0], "train"), backend.claimed_gpus(snakemake.resources.gpu):
    # imported once this job's GPUs are set: the framework reads CUDA_VISIBLE_DEVICES at start
    from tessera import train

    summary = train.train(
        snakemake.input.split,
        dict(zip(snakemake.params.images, snakemake.input.patches)),
        snakemake.output.model,
        snakemake.output.history,
        snakemake.output.summary,
        resume_root=snakemake.params.resume,
        settings={**snakemake.params.settings, "require_gpu": snakemake.resources.require_gpu},
        data=snakemake.params.data,
        task=snakemake.params.task,
        threads=snakemake.threads,
        code=snakemake.params.code,
    )
    print({k: v for k, v in summary.items() if k not in ("settings", "versions")})
