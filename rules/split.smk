checkpoint split:
    """Put each image on the training or validation side by a seeded hash of its name."""
    input:
        infos=expand(results("patches/{image}.json"), image=IMAGES),
    output:
        tsv=results("dataset/split.tsv"),
    log:
        logs("split.log"),
    conda:
        "../envs/tessera.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=settings_of("split", "max_val_patches"),
        code=code("split"),
    script:
        "../scripts/split.py"
