#!/usr/bin/env bash
# Compile-checks the `cuda` feature (clippy, warnings denied, every target) on any x86_64 Linux
# machine, GPU or not. candle's CUDA kernels are compiled to PTX at build time, so the check needs
# nvcc: taken from `nvcc` on PATH when it is there (CUDA_ROOT/CUDA_PATH set by the caller), else
# from NVIDIA's pinned PyPI wheels (toolkit-requirements.txt, ~100 MB, fetched once) unpacked into
# the cache folder. Linking a CUDA binary needs the driver's libcuda, so this checks, it does not
# link; the GPU tests themselves run only on a GPU machine (README, "GPU").
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if ! command -v nvcc >/dev/null 2>&1; then
    [ "$(uname -m)" = x86_64 ] || { echo "check-build: no nvcc and no CUDA wheels for $(uname -m)" >&2; exit 1; }
    cache="${TCOBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcobench}"
    toolkit="$cache/cuda-toolkit-$(sha256sum "$here/toolkit-requirements.txt" | cut -c1-12)"
    if [ ! -x "$toolkit/bin/nvcc" ]; then
        echo "check-build: fetching nvcc and CUDA headers (pinned PyPI wheels) into $toolkit" >&2
        tmp="$(mktemp -d)"
        trap 'rm -rf "$tmp"' EXIT
        python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
            -r "$here/toolkit-requirements.txt" -d "$tmp/wheels"
        python3 - "$tmp/wheels" "$tmp/unpacked" <<'PY'
import pathlib, sys, zipfile
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    zipfile.ZipFile(wheel).extractall(sys.argv[2])
PY
        chmod +x "$tmp/unpacked/nvidia/cu13/bin/"* "$tmp/unpacked/nvidia/cu13/nvvm/bin/"*
        mkdir -p "$cache"
        rm -rf "$toolkit"
        mv "$tmp/unpacked/nvidia/cu13" "$toolkit"
    fi
    export PATH="$toolkit/bin:$PATH" CUDA_ROOT="$toolkit" CUDA_PATH="$toolkit"
fi
# The kernels are built for this compute capability (9.0: H100/H200); no GPU is asked.
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
nvcc --version | tail -n 2
cd "$repo"
cargo clippy --locked -p tcobench -p tcobench-backends --features cuda --all-targets -- -D warnings
echo "check-build: the cuda feature compiles and passes clippy"
