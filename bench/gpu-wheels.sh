#!/usr/bin/env bash
# Makes the wheels that bench/gpu.sh installs on a GPU node without a network: Snakemake, Keras and
# every other need of the workflow that a node with JAX on CUDA, numpy, pandas and Pillow lacks.
# Run it on a machine with a network, in the project root or anywhere in it:
#
#   bench/gpu-wheels.sh [PYTHON_VERSION [ARCH [FOLDER]]]      defaults: 3.12 x86_64 .whl
#
# PYTHON_VERSION and ARCH (x86_64 or aarch64) are the node's, not this machine's: the wheels are
# chosen for them. The pins come from requirements-gpu.txt, read now. What the node has (jax and
# what it brings, numpy, pandas, Pillow) is left out, and so are tensorboard (its writer needs
# TensorFlow, which the node lacks: training skips it with a warning), the SLURM plugins (the
# check runs Snakemake locally) and PuLP (16 MiB of solver binaries for Snakemake's ILP job
# selector: gpu.sh runs Snakemake with --scheduler greedy). The folder must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
pyver=${1:-3.12}
arch=${2:-x86_64}
dest=${3:-.whl}
case "$arch" in x86_64 | aarch64) ;; *)
    echo "gpu-wheels: error: ARCH must be x86_64 or aarch64, not $arch" >&2
    exit 2
    ;;
esac
[[ $pyver =~ ^3\.[0-9]+$ ]] || {
    echo "gpu-wheels: error: PYTHON_VERSION must look like 3.12, not $pyver" >&2
    exit 2
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
platform=(--only-binary=:all: --implementation cp --python-version "$pyver")
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014; do
    platform+=(--platform "${tag}_$arch")
done
[ "$arch" = aarch64 ] || platform+=(--platform manylinux_2_12_x86_64 --platform manylinux1_x86_64)

# The pins of requirements-gpu.txt: the node's own packages apart from the ones to carry.
node=() carry=()
while read -r req; do
    name=$(echo "${req%%[=<>\[]*}" | tr 'A-Z_' 'a-z-')
    case "$name" in
        jax | numpy | pandas | pillow) node+=("${req/\[cuda12\]/}") ;;
        tensorboard | snakemake-executor-plugin-*) ;;
        *) carry+=("$req") ;;
    esac
done < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' -e '/^-/d' requirements-gpu.txt)

# connection_pool (a Snakemake need) is published as source only: its wheel is built here.
python3 -m pip wheel -q --no-deps "connection_pool>=0.0.3" -w "$work/built"
# What the node has, with everything it brings; then the same with the workflow's needs: the
# difference, by name, is what to carry. pip fetches only metadata for this where the index
# serves it apart (PyPI does), not the wheels of jaxlib or scipy.
resolve() {
    python3 -m pip install -q --dry-run --ignore-installed --target "$work/none" "${platform[@]}" \
        --find-links "$work/built" --report "$1" "${@:2}"
}
resolve "$work/node.json" "${node[@]}"
resolve "$work/all.json" "${node[@]}" "${carry[@]}"
python3 - "$work" <<'EOF'
import json, sys

work = sys.argv[1]
def names(report):
    return {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
            for i in json.load(open(f"{work}/{report}"))["install"]}
have, every = names("node.json"), names("all.json")
with open(f"{work}/carry.txt", "w") as f:
    f.writelines(f"{n}=={v}\n" for n, v in sorted(every.items()) if n not in have and n != "pulp")
EOF
mkdir -p "$dest"
rm -f "$dest"/*.whl
python3 -m pip download -q --no-deps "${platform[@]}" --find-links "$work/built" -d "$dest" \
    -r "$work/carry.txt"
cp "$work/carry.txt" "$dest/carried.txt"
# gpu.sh checks that the node's Python is the one these wheels were made for.
echo "$pyver $arch" >"$dest/TARGET"
mib=$(du -sm "$dest" | cut -f1)
count=$(find "$dest" -name "*.whl" | wc -l)
echo "gpu-wheels: $count wheels, ${mib} MiB in $dest, for Python $pyver on $arch"
if [ "$mib" -gt 64 ]; then
    echo "gpu-wheels: error: $dest holds ${mib} MiB, over the 64 MiB to carry" >&2
    exit 1
fi
