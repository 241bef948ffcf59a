"""Apply a trained model to another folder (rules apply_inputs, apply_image and apply)."""

import contextlib

from tessera import apply, backend
from tessera.jobs import job

# An image job runs the model: on one GPU that it shares with other inference jobs only.
gpu = backend.shared_gpu() if snakemake.rule == "apply_image" else contextlib.nullcontext()
with job(snakemake.log[0], snakemake.rule), gpu:
    if snakemake.rule == "apply_inputs":
        table = apply.check_inputs(
            dict(zip(snakemake.params.images, snakemake.input.images)),
            dict(zip(snakemake.params.images, snakemake.params.names)),
            snakemake.output.tsv,
            max_megapixels=snakemake.params.max_megapixels,
            threads=snakemake.threads,
        )
        print(table.to_string())
    elif snakemake.rule == "apply_image":
        p = snakemake.params.settings
        backend.configure(snakemake.threads)
        model, summary = apply.load(
            snakemake.input.model, snakemake.input.summary, snakemake.params.model_file
        )
        record = apply.apply_image(
            model,
            summary,
            snakemake.input.image,
            snakemake.wildcards.image,
            snakemake.output.png,
            snakemake.output.record,
            tile=p["tile"],
            margin=p["margin"],
            mode=p["mode"],
            batch_size=p["batch_size"],
            ensemble=p["ensemble"],
            max_megapixels=snakemake.params.max_megapixels,
            mask_path=snakemake.input.mask or None,
        )
        print(record)
    else:
        apply.write_tables(
            snakemake.input.records,
            snakemake.input.inputs,
            snakemake.params.skipped,
            snakemake.output.metrics,
            snakemake.output.skipped,
        )
