"""The GPU check: on a GPU node without a network, install what it lacks from carried wheels and
measure the GPU path, every step bounded in time so that the whole fits in ten minutes.

Steps: install the wheels (bench/gpu-wheels.sh makes them); the GPUs and the JAX devices; the
training speed (bench/train_speed.py: seed and dncnn, float32 and mixed_bfloat16, batches of 64
and 512); the default workflow end to end on one GPU; config/denoise.yaml on a short budget, on
the GPU and on the node's CPU; the default training on two GPUs where two are visible. One table
is printed and written to OUT/gpu-check.md; each step's output goes to OUT/logs/. A step that
cannot run here says so in one line and the check goes on; the exit status is 1 if a step failed.

    bench/gpu.sh [--out bench/out/gpu] [--wheels .whl] [--no-install] [--overrides FILE] ...

This script uses the standard library only: it runs before anything is installed. Its steps run
in children with the installed wheels on PYTHONPATH and KERAS_BACKEND=jax. See docs/gpu-check.md.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["step", "setting", "device", "epochs", "patches/s", "bare fit patches/s"]
COLUMNS += ["val PSNR dB", "wall s", "note"]
# What the workflow imports; a wheel missing from the carried folder shows up here by name.
MODULES = "snakemake keras jax numpy pandas PIL skimage scipy matplotlib jinja2 yaml jsonschema"
MODULES += " h5py tqdm"

DEVICES = """
import json, jax, jaxlib
print(json.dumps({"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                  "devices": [f"{d.platform}:{d.id}" for d in jax.devices()],
                  "kinds": [d.device_kind for d in jax.devices()]}))
"""


class Check:
    def __init__(self, args):
        self.args, self.out = args, Path(args.out).resolve()
        self.rows, self.failed, self.began = [], False, time.monotonic()
        self.gpus, self.device, self.one_device = [], "cpu:0", {}
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        site = str(self.out / "site")
        self.env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
        # a step killed at its time limit still leaves what it printed in its log
        self.env["PYTHONUNBUFFERED"] = "1"
        if not args.no_install:
            paths = [site] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            self.env["PYTHONPATH"] = os.pathsep.join(paths)

    def add(self, step, setting, **cells):
        row = {"step": step, "setting": setting, **cells}
        self.rows.append(row)
        print(" | ".join(f"{k}: {v}" for k, v in row.items() if v not in (None, "")), flush=True)

    def run(self, name, cmd, limit, env=None, cwd=REPO):
        """Run cmd with its output in OUT/logs/name.log, killed (with its children) past limit
        seconds or the check's deadline. Returns (exit status, None if killed; seconds; the last
        line that says what went wrong)."""
        limit = min(limit, self.args.deadline - (time.monotonic() - self.began))
        if limit < 5:
            return None, 0.0, f"not run: the {self.args.deadline:.0f} s deadline is spent"
        log = self.out / "logs" / f"{name}.log"
        started = time.monotonic()
        with open(log, "w") as f:
            f.write(f"$ {' '.join(map(str, cmd))}\n")
            f.flush()
            proc = subprocess.Popen(
                [str(c) for c in cmd],
                cwd=cwd,
                env=env or self.env,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout ends every child too
            )
            try:
                code = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                _end(proc)
                code = None
        seconds = time.monotonic() - started
        if code is None:
            return None, seconds, f"timed out after {limit:.0f} s (log: {log})"
        return code, seconds, "" if code == 0 else f"{_last_error(log)} (log: {log})"

    def fail(self, step, setting, why, seconds=None):
        self.failed = True
        self.add(step, setting, **{"wall s": _fmt(seconds, 1), "note": f"failed: {why}"})

    # --- the steps ---------------------------------------------------------------------------

    def install(self):
        """Install the carried wheels (unless --no-install), and check that everything the
        workflow imports loads."""
        setting, seconds = "none (--no-install): this Python's own packages", 0.0
        if not self.args.no_install:
            wheels = Path(self.args.wheels).resolve()
            found = sorted(wheels.glob("*.whl"))
            here = [f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine()]
            if not found:
                raise Stop(
                    f"no wheels in {wheels}: make them on a machine with a network with "
                    f"bench/gpu-wheels.sh {' '.join(here)}, and carry the folder here"
                )
            target = wheels / "TARGET"
            made_for = target.read_text().split() if target.exists() else here
            if made_for != here:
                raise Stop(
                    f"the wheels in {wheels} are for Python {' on '.join(made_for)}, this is "
                    f"Python {' on '.join(here)}: make them with bench/gpu-wheels.sh "
                    f"{' '.join(here)}"
                )
            site = self.out / "site"
            shutil.rmtree(site, ignore_errors=True)
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
            pip += ["--no-compile", "--disable-pip-version-check", "--target", site, *found]
            code, seconds, why = self.run("install", pip, self.args.install_timeout)
            if code != 0:
                raise Stop(f"pip could not install the wheels: {why}")
            setting = f"{len(found)} wheels from {_short(wheels)}"
        code = f"import {', '.join(MODULES.split())}"
        status, _, why = self.run("imports", [sys.executable, "-c", code], 20)
        if status != 0:
            raise Stop(f"the workflow's needs do not all import: {why}")
        note = "every module the workflow imports loads; KERAS_BACKEND=jax"
        self.add("install", setting, note=note, **{"wall s": _fmt(seconds, 1)})

    def devices(self):
        smi, gpus = shutil.which("nvidia-smi"), []
        if smi:
            query = "--query-gpu=index,name,memory.total,driver_version"
            code, _, why = self.run("nvidia-smi", [smi, query, "--format=csv,noheader"], 10)
            log = (self.out / "logs" / "nvidia-smi.log").read_text().splitlines()[1:]
            gpus = [line.split(", ") for line in log if line.count(", ") == 3] if code == 0 else []
        code, seconds, why = self.run("devices", [sys.executable, "-c", DEVICES], 30)
        if code != 0:
            raise Stop(f"JAX does not start: {why}")
        lines = (self.out / "logs" / "devices.log").read_text().splitlines()
        seen = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
        self.gpus = [d for d in seen["devices"] if not d.startswith("cpu")]
        self.device = (self.gpus or seen["devices"])[0]
        described = "; ".join(f"gpu:{i} {name}, {mem}" for i, name, mem, _ in gpus)
        if gpus and not self.gpus:
            note = (
                f"nvidia-smi lists {len(gpus)} GPU(s) but JAX sees none: its jaxlib has no CUDA "
                "(pip install jax[cuda12]); every step below runs on the CPU"
            )
        elif not gpus and not self.gpus:
            note = "no GPU here (no nvidia-smi, JAX sees the CPU only): the steps run on the CPU"
        else:
            note = f"JAX sees {len(self.gpus)} GPU(s): {', '.join(seen['kinds'])}"
        driver = f", driver {gpus[0][3]}" if gpus else ""
        self.add(
            "devices",
            f"jax {seen['jax']}, jaxlib {seen['jaxlib']}{driver}",
            device=described or ", ".join(seen["devices"]),
            note=note,
            **{"wall s": _fmt(seconds, 1)},
        )

    def speed(self):
        a = self.args
        for precision in a.speed_precisions:
            for batch in a.speed_batches:
                cmd = [sys.executable, REPO / "bench" / "train_speed.py", "--presets"]
                cmd += [*a.speed_presets, "--precision", precision, "--batch", batch]
                cmd += ["--patches", a.speed_patches, "--epochs", a.speed_epochs, "--rounds", 1]
                name = f"speed-{precision}-{batch}"
                code, seconds, why = self.run(name, cmd, a.speed_timeout)
                # what a run cut short measured still counts
                rates = _speed_rows((self.out / "logs" / f"{name}.log").read_text())
                for preset in a.speed_presets:
                    setting = f"{preset}, {precision}, batch {batch}"
                    if preset not in rates:
                        self.fail("speed", setting, why or "no figure in its output", seconds)
                        continue
                    bare, ours = rates[preset]
                    note = f"tessera/bare {ours / bare:.2f}; {a.speed_patches} patches, "
                    note += f"{a.speed_epochs} epochs, the first not timed"
                    self.add(
                        "speed",
                        setting,
                        device=self.device,
                        note=note,
                        **{
                            "patches/s": _fmt(ours),
                            "bare fit patches/s": _fmt(bare),
                            "wall s": _fmt(seconds, 1),
                        },
                    )

    def workflow(self, step, configfile, changes, resources=None, env=None, until=None, note=""):
        """Run the workflow with configfile (the repository's own, read now), then the
        --overrides file, then changes, in a fresh folder under OUT, and add its row; returns
        the training's summary.json, or None after a row saying why."""
        work = self.out / step.replace(" ", "-")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        # the configs' relative paths (images: resources/..., config/...) as in a clone
        for linked in ("config", "resources"):
            (work / linked).symlink_to(REPO / linked)
        # JSON is YAML: Snakemake reads it as a config file
        (work / "check.yaml").write_text(json.dumps(changes))
        overrides = [Path(self.args.overrides).resolve()] if self.args.overrides else []
        cmd = [sys.executable, "-m", "snakemake", "-s", REPO / "Snakefile", "-d", work]
        # Snakemake's ILP job selector needs PuLP, which the wheels leave out (gpu-wheels.sh)
        cmd += ["--cores", "all", "--scheduler", "greedy"]
        cmd += ["--configfile", work / configfile, *overrides, work / "check.yaml"]
        cmd += ["--resources", resources] if resources else []
        cmd += ["--until", until] if until else []
        limit = self.args.train_timeout if until else self.args.workflow_timeout
        code, seconds, why = self.run(work.name, cmd, limit, env={**self.env, **(env or {})})
        setting = _setting(configfile, changes, resources, until)
        summaries = sorted(work.glob("results/**/model/summary.json"))
        if code != 0 or not summaries:
            self.fail(step, setting, why or "no summary.json", seconds)
            return None
        summary = json.loads(summaries[0].read_text())
        notes = [f"precision {summary.get('precision')}", note]
        if summary.get("stopped_by_budget"):
            notes.insert(0, "stopped by its budget")
        # a restoration task's input, scored against the target (the noisy input, ...)
        inputs = [k[9:-6] for k in summary if k.startswith("val_loss_") and k.endswith("_input")]
        if inputs and summary.get("val_psnr_input_db"):
            notes.append(f"the {inputs[0]} input: {summary['val_psnr_input_db']:.2f} dB")
        self.add(
            step,
            setting,
            device=summary.get("device", ""),
            epochs=summary.get("epochs"),
            note="; ".join(n for n in notes if n),
            **{
                "patches/s": _fmt(summary.get("patches_per_s")),
                "val PSNR dB": _fmt(summary.get("val_psnr_db"), 2),
                "wall s": _fmt(seconds, 1),
            },
        )
        return summary

    def default_workflow(self):
        changes = {"train": {"require_gpu": bool(self.gpus)}}
        note = "end to end, report written"
        if not self.gpus:
            note += "; no GPU: on the CPU, with train.require_gpu false"
        summary = self.workflow("workflow", "config/config.yaml", changes, "gpu=1", note=note)
        self.one_device = summary or {}

    def denoise(self):
        # the config's own budget is minutes long: both runs get the same shorter one
        changes = {"train": {"max_minutes": self.args.denoise_minutes}}
        on_gpu = {"train": {**changes["train"], "require_gpu": bool(self.gpus)}}
        self.workflow("denoise", "config/denoise.yaml", on_gpu, "gpu=1", until="train")
        if not self.gpus:
            setting = _setting("config/denoise.yaml", changes, until="train")
            why = "skipped: no GPU, so the run above is the CPU's"
            self.add("denoise cpu", setting, note=why)
            return
        cpu = {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
        note = "on this node's CPU (JAX_PLATFORMS=cpu)"
        self.workflow(
            "denoise cpu", "config/denoise.yaml", changes, env=cpu, until="train", note=note
        )

    def two_gpus(self):
        changes = {"train": {"gpus": 2, "require_gpu": bool(self.gpus)}}
        if len(self.gpus) < 2 and not self.args.virtual_devices:
            setting = _setting("config/config.yaml", changes, "gpu=2", "train")
            why = f"skipped: {len(self.gpus)} GPU(s) visible, data parallel needs 2"
            self.add("gpus 2", setting, note=why)
            return
        one = self.one_device.get("patches_per_s")
        env, note = {}, f"one device: {_fmt(one)} patches/s" if one else ""
        if len(self.gpus) < 2:
            # two virtual CPU devices stand in: the data-parallel path, not a GPU figure
            flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
            env = {"XLA_FLAGS": flags.strip()}
            note = "two virtual CPU devices (--virtual-devices): the path, not a figure"
        self.workflow("gpus 2", "config/config.yaml", changes, "gpu=2", env, "train", note)

    def table(self):
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for row in self.rows:
            cells = [str(row.get(c, "") if row.get(c) is not None else "") for c in COLUMNS]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        total = time.monotonic() - self.began
        head = (
            f"GPU check of {time.strftime('%Y-%m-%d %H:%M')}: {total:.0f} s in all; "
            f"CPU {_cpu()}; Python {platform.python_version()}\n\n"
        )
        text = head + "\n".join(lines) + "\n"
        (self.out / "gpu-check.md").write_text(text)
        print("\n" + text + f"\n(written to {self.out / 'gpu-check.md'})")


class Stop(Exception):
    """A step without which the rest cannot run."""


def _end(proc):
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _last_error(log):
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("tessera") or "Error" in line or "error:" in line:
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def _speed_rows(text):
    """{preset: (bare fit, tessera)} from the table bench/train_speed.py prints."""
    rates = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            try:
                rates[parts[0]] = (float(parts[1]), float(parts[2]))
                float(parts[3])
            except ValueError:
                rates.pop(parts[0], None)
    return rates


def _fmt(value, digits=0):
    if value is None:
        return ""
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) else str(value)


def _setting(configfile, changes, resources=None, until=None):
    flat = [f"{s}.{k} {json.dumps(v)}" for s, kv in changes.items() for k, v in kv.items()]
    flat += [f"--resources {resources}"] if resources else []
    return ", ".join([configfile, *flat] + ([f"until {until}"] if until else []))


def _short(path):
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def _cpu():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "gpu"), help="output folder")
    ap.add_argument("--wheels", default=str(REPO / ".whl"), help="bench/gpu-wheels.sh's folder")
    ap.add_argument("--no-install", action="store_true", help="use what this Python has")
    ap.add_argument("--overrides", help="a YAML file laid over every workflow run's config")
    ap.add_argument("--deadline", type=float, default=600, help="seconds for the whole check")
    ap.add_argument("--install-timeout", type=float, default=30)
    ap.add_argument("--speed-presets", nargs="+", default=["seed", "dncnn"])
    ap.add_argument("--speed-precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    ap.add_argument("--speed-batches", nargs="+", type=int, default=[64, 512])
    ap.add_argument("--speed-patches", type=int, default=16384)
    ap.add_argument("--speed-epochs", type=int, default=3)
    ap.add_argument("--speed-timeout", type=float, default=45, help="seconds for each run")
    ap.add_argument("--workflow-timeout", type=float, default=120, help="seconds, end to end")
    ap.add_argument("--train-timeout", type=float, default=70, help="seconds, until train")
    ap.add_argument("--denoise-minutes", type=float, default=0.4, help="training budget")
    ap.add_argument(
        "--virtual-devices",
        action="store_true",
        help="with fewer than two GPUs, run the two-GPU step on two virtual CPU devices",
    )
    args = ap.parse_args()
    check = Check(args)
    try:
        check.install()
        check.devices()
    except Stop as e:
        check.failed = True
        check.add("stopped", "", note=str(e))
        check.table()
        return 1
    check.speed()
    check.default_workflow()
    check.denoise()
    check.two_gpus()
    check.table()
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
