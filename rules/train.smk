rule train:
    """Train the chosen preset on the training patches, validating on the validation images."""
    input:
        split=lambda w: fill(results(f"{SPLIT}/split.tsv"), w),
        patches=lambda w: [fill(results(f"{PATCHES}/{i}.npy"), w) for i in usable_images(w)],
        # fine-tuning: the weights training starts from (a new file retrains)
        init=lambda w: conf(w)["model"].get("init") or [],
    output:
        model=run_path("model/model.keras"),
        history=run_path("model/history.tsv"),
        summary=run_path("model/summary.json"),
    log:
        logs(f"{RUN}train.log"),
    benchmark:
        logs(f"benchmarks/{RUN}train.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: lambda w: conf(w)["train"]["threads"]
    resources:
        mem_mb=settings.MEM_MB["train"],
        runtime=120,
        gpu=lambda w: conf(w)["train"]["gpus"],
        require_gpu=lambda w: int(conf(w)["train"]["require_gpu"]),
    params:
        # the network with its arguments filled in (and a model file's code hash): a change retrains
        settings=lambda w: {**settings_of(conf(w), "train"), "model": model_spec(conf(w))},
        data=lambda w: training_data(conf(w)),
        images=usable_images,
        task=lambda w: conf(w)["task"],
        # Outside the outputs: Snakemake deletes a failed job's outputs, and this must survive.
        resume=lambda w: results(f".resume/{RUN}train").replace("{variant}", w.get("variant", "")),
        code=code("train"),
    script:
        "../scripts/train.py"
