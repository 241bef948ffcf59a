rule baselines:
    """Classical methods on the same images and noise: JPEG, or blur, median and non-local means."""
    input:
        split=results("dataset/split.tsv"),
        sources=lambda w: [source_of(i) for i in usable_images(w)],
    output:
        metrics=results("baselines/metrics.tsv"),
        parameters=results("baselines/parameters.json"),
    log:
        logs("baselines.log"),
    conda:
        "../envs/tessera.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        images=usable_images,
        task=config["task"],
        max_megapixels=config["max_megapixels"],
        code=code("baselines"),
    script:
        "../scripts/baselines.py"
