rule patches:
    """Decode one image and cut it into square patches (an undecodable file is recorded, not fatal)."""
    input:
        image=source,
    output:
        patches=results("patches/{image}.npy"),
        info=results("patches/{image}.json"),
    log:
        logs("patches/{image}.log"),
    conda:
        "../envs/tessera.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=config["patches"],
        max_megapixels=config["max_megapixels"],
        # The file's path inside the images folder, as the report shows it.
        name=lambda wildcards: IMAGES[wildcards.image],
        code=code("patches"),
    script:
        "../scripts/patches.py"
