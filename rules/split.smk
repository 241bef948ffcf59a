checkpoint split:
    """Put each image on the training or validation side by a seeded hash of its name."""
    input:
        patches=expand(results("patches/{image}.npy"), image=IMAGES),
        infos=expand(results("patches/{image}.json"), image=IMAGES),
    output:
        train=results("dataset/train.npy"),
        val=results("dataset/val.npy"),
        tsv=results("dataset/split.tsv"),
    log:
        logs("split.log"),
    conda:
        "../envs/tessera.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        settings=config["split"],
        code=code("split"),
    script:
        "../scripts/split.py"
