checkpoint split:
    """Put each image on the training or validation side by a seeded hash of its name."""
    input:
        infos=lambda w: [fill(results(f"{PATCHES}/{i}.json"), w) for i in IMAGES],
    output:
        tsv=results(f"{SPLIT}/split.tsv"),
    log:
        logs(f"{SPLIT}/split.log" if VARIANTS else "split.log"),
    benchmark:
        logs(f"benchmarks/{SPLIT}/split.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=lambda w: settings_of(conf(w), "split", "max_val_patches"),
        code=code("split"),
    script:
        "../scripts/split.py"
