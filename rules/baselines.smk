rule baselines:
    """Classical methods on the same images and noise: JPEG, or blur, median and non-local means."""
    input:
        split=lambda w: fill(results(f"{SPLIT}/split.tsv"), w),
        sources=lambda w: [source_of(i) for i in usable_images(w)],
        # task paired: the clean partners the images are measured against
        targets=lambda w: [t for i in usable_images(w) for t in [target_of(i)] if t],
    output:
        metrics=results(f"{BASELINES}/metrics.tsv"),
        parameters=results(f"{BASELINES}/parameters.json"),
    log:
        logs(f"{BASELINES}/baselines.log" if VARIANTS else "baselines.log"),
    benchmark:
        logs(f"benchmarks/{BASELINES}/baselines.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        images=usable_images,
        task=lambda w: conf(w)["task"],
        max_megapixels=config["max_megapixels"],
        code=code("baselines"),
    script:
        "../scripts/baselines.py"
