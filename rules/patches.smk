rule patches:
    """Decode one image and cut it into square patches (an undecodable file is recorded, not fatal)."""
    input:
        image=source,
        # task paired: the clean partner, cut at the same positions
        target=target,
    output:
        patches=results(f"{PATCHES}/{{image}}.npy"),
        info=results(f"{PATCHES}/{{image}}.json"),
    log:
        logs(f"{PATCHES}/{{image}}.log"),
    benchmark:
        logs(f"benchmarks/{PATCHES}/{{image}}.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: conf(w)["patches"],
        max_megapixels=config["max_megapixels"],
        # The file's path inside the images folder, as the report shows it.
        name=lambda w: IMAGES[w.image],
        target_name=lambda w: (
            os.path.join(config["targets"], PARTNERS[w.image]) if w.image in PARTNERS else None
        ),
        code=code("patches"),
    script:
        "../scripts/patches.py"
