# CUDA image of tcobench: `docker build -t tcobench .` then
# `docker run --gpus all -v $PWD/results:/app/results tcobench run scenarios/smoke.yaml --device cuda`.
FROM nvidia/cuda:12.6.3-devel-ubuntu24.04 AS build
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

FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends git python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/tcobench /usr/local/bin/tcobench
COPY scenarios ./scenarios
ENTRYPOINT ["tcobench"]
