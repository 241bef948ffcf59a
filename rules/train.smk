rule train:
    """Train the chosen preset on the training patches, validating on the validation images."""
    input:
        split=results("dataset/split.tsv"),
        patches=lambda w: expand(results("patches/{image}.npy"), image=usable_images(w)),
    output:
        model=results("model/model.keras"),
        history=results("model/history.tsv"),
        summary=results("model/summary.json"),
    log:
        logs("train.log"),
    conda:
        "../envs/tessera.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=config["train"]["gpus"],
    params:
        settings={**settings_of("train"), "preset": config["model"]["preset"]},
        data=training_data(),
        images=usable_images,
        task=config["task"],
        # Outside the outputs: Snakemake deletes a failed job's outputs, and this must survive.
        resume=results(".resume/train"),
        code=code("train"),
    script:
        "../scripts/train.py"
