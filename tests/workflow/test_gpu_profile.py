"""The SLURM profile's training stops when it cannot use the GPU it was given, instead of training
many times slower on the CPU. Run here with the local executor (the profile's settings, no
scheduler), on a machine where the backend sees no GPU."""

from tests.conftest import REPO, snakemake, tiny_config, tiny_images


def test_the_slurm_profile_stops_a_training_that_cannot_use_its_gpu(tmp_path):
    tiny_config(tmp_path / "tiny.yaml", tiny_images(tmp_path / "images"))
    proc = snakemake(
        tmp_path,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--executor",
        "local",
        "--configfile",
        str(tmp_path / "tiny.yaml"),
        "--until",
        "train",
        check=False,
        # what SLURM sets for a job granted --gpus=1; this machine's backend has no GPU
        env={"CUDA_VISIBLE_DEVICES": "0"},
    )
    assert proc.returncode != 0
    # the job's line, which Snakemake shows again with the failed job's log
    errors = {line for line in proc.stderr.splitlines() if line.startswith("tessera train:")}
    assert len(errors) == 1 and "require_gpu" in min(errors) and "GPU(s) 0" in min(errors), errors
    assert "requirements-gpu.txt" in errors.pop()
    assert not (tmp_path / "results" / "model" / "model.keras").exists()
