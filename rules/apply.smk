# The apply target: a trained model (a variant's, this run's, or a model.keras from elsewhere) run
# over every image of another folder, with the same discovery, skips, names and tiling as the
# reconstruction stage. Set apply.images (and apply.model), then `snakemake apply`.
checkpoint apply_inputs:
    """Decode every image of the apply folder once: the ones that cannot be used are listed,
    as the patch stage lists them, instead of failing their jobs."""
    input:
        images=lambda w: [apply_source_of(i) for i in APPLY["images"]] if APPLY else [],
    output:
        tsv=f"{APPLIED}/inputs.tsv",
    log:
        logs("apply/inputs.log"),
    benchmark:
        logs("benchmarks/apply/inputs.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        images=lambda w: list(APPLY["images"]) if APPLY else [],
        names=lambda w: list(APPLY["images"].values()) if APPLY else [],
        max_megapixels=config["max_megapixels"],
        code=code("apply"),
    script:
        "../scripts/apply.py"


rule apply_image:
    """Run the model over one image of the apply folder, tiled as in reconstruction."""
    input:
        image=apply_source,
        model=lambda w: APPLY["model"][0],
        summary=lambda w: APPLY["model"][1],
        mask=lambda w: APPLY["masks"].get(w.image, []),
    output:
        png=f"{APPLIED}/{{image}}.png",
        record=f"{APPLIED}/{{image}}.json",
    log:
        logs("apply/{image}.log"),
    benchmark:
        logs("benchmarks/apply/{image}.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: lambda w: APPLY["settings"]["reconstruct"]["threads"]
    resources:
        mem_mb=settings.MEM_MB["reconstruct"],
        runtime=30,
    params:
        settings=lambda w: settings_of(APPLY["settings"], "reconstruct"),
        max_megapixels=config["max_megapixels"],
        # the only code that may build a network from a file: the one the user names
        model_file=lambda w: config["apply"].get("model_file")
        or APPLY["settings"]["model"].get("file"),
        code=code("apply"),
    script:
        "../scripts/apply.py"


rule apply:
    """The apply target: every usable image of apply.images rebuilt, metrics (in reconstruct
    mode) and the skipped files in two tables."""
    input:
        records=lambda w: [f"{APPLIED}/{i}.json" for i in apply_usable(w)],
        inputs=f"{APPLIED}/inputs.tsv",
    output:
        metrics=f"{APPLIED}/metrics.tsv",
        skipped=f"{APPLIED}/skipped.tsv",
    log:
        logs("apply/tables.log"),
    benchmark:
        logs("benchmarks/apply/tables.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        skipped=lambda w: APPLY["skipped"] if APPLY else [],
        code=code("apply"),
    script:
        "../scripts/apply.py"
