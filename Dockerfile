# CUDA image of tcobench: `docker build -t tcobench .` then
# `docker run --gpus all -v $PWD/results:/app/results tcobench run scenarios/smoke.yaml --device cuda`.
# CUDA 13: the pinned onnxruntime-gpu wheel (1.31.1) is built against it (libcublas.so.13, cuDNN 9
# for CUDA 13); the driver must be R580 or newer.
FROM nvidia/cuda:13.0.0-devel-ubuntu24.04 AS build
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates build-essential pkg-config git \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH=/root/.cargo/bin:$PATH
# candle's CUDA kernels are compiled for this compute capability (9.0 = H100/H200; 8.0 = A100).
ARG CUDA_COMPUTE_CAP=90
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tcobench --features cuda

# ONNX Runtime's CUDA execution provider (the onnxruntime-gpu wheel) needs cuDNN 9 at run time.
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends git python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/tcobench /usr/local/bin/tcobench
COPY scenarios ./scenarios
# Models and the ONNX Runtime library are cached here; the pinned onnxruntime-gpu wheel is fetched
# from PyPI on first use (mount a volume on /app/cache to keep it, or set ORT_DYLIB_PATH).
ENV TCOBENCH_CACHE=/app/cache
ENTRYPOINT ["tcobench"]
