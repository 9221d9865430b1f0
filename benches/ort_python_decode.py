#!/usr/bin/env python3
"""Greedy decode throughput of a tcobench `model.onnx` driven from Python's onnxruntime.

The reference point for the Rust side (`cargo bench -p tcobench-backends --bench ort_decode`):
same model file, same prompts (token i of sequence r is (3 + 37*i + 101*r) mod vocab_size), same
thread settings (intra-op threads default to all cores, inter-op 1, sequential execution), same
greedy loop (prefill, then new_tokens - 1 single-token steps through the key/value cache).

Two ways to drive the loop:
  --mode plain      session.run() with numpy feeds; present.* come back as numpy arrays and are
                    fed back as past_key_values.* (what most Python code does);
  --mode iobinding  OrtValues bound with io_binding(); present.* stay ORT-owned between steps
                    (what the Rust backend does).

Decode throughput = batch * (new_tokens - 1) / (time from first token to last); the median over
--reps repetitions (after --warmup) is printed with the prefill time as one JSON line.

Needs `pip install onnxruntime==1.31.1 numpy`.
"""

import argparse
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="directory holding config.json and model.onnx")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--intra", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--inter", type=int, default=1)
    p.add_argument("--mode", choices=["plain", "iobinding"], default="iobinding")
    return p.parse_args()


def session(path, intra, inter):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra
    opts.inter_op_num_threads = inter
    opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL if inter > 1 else ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


class Model:
    def __init__(self, sess, config):
        self.sess = sess
        self.layers = config["num_hidden_layers"]
        self.kv_heads = config.get("num_key_value_heads", config["num_attention_heads"])
        self.head_dim = config["hidden_size"] // config["num_attention_heads"]
        self.cache = [
            (f"past_key_values.{l}.{k}", f"present.{l}.{k}") for l in range(self.layers) for k in ("key", "value")
        ]
        self.outputs = ["logits"] + [present for _, present in self.cache]

    def step_feeds(self, tokens, past_len):
        b, s = tokens.shape
        return {
            "input_ids": tokens,
            "attention_mask": np.ones((b, past_len + s), dtype=np.int64),
            "position_ids": np.tile(np.arange(past_len, past_len + s, dtype=np.int64), (b, 1)),
        }

    def empty_past(self, b):
        return np.zeros((b, self.kv_heads, 0, self.head_dim), dtype=np.float32)

    def generate_plain(self, prompts, new_tokens, on_token):
        tokens, past_len = prompts, 0
        past = {name: self.empty_past(prompts.shape[0]) for name, _ in self.cache}
        out = []
        for step in range(new_tokens):
            feeds = self.step_feeds(tokens, past_len)
            feeds.update(past)
            results = self.sess.run(self.outputs, feeds)
            nxt = np.argmax(results[0][:, -1, :], axis=-1).astype(np.int64)  # first maximum on ties
            out.append(nxt)
            on_token(step)
            past_len += tokens.shape[1]
            past = {name: value for (name, _), value in zip(self.cache, results[1:])}
            tokens = nxt[:, None]
        return np.stack(out, axis=1)

    def generate_iobinding(self, prompts, new_tokens, on_token):
        io = self.sess.io_binding()
        tokens, past_len = prompts, 0
        empty = ort.OrtValue.ortvalue_from_numpy(self.empty_past(prompts.shape[0]))
        past = {name: empty for name, _ in self.cache}
        out = []
        for step in range(new_tokens):
            io.clear_binding_inputs()
            io.clear_binding_outputs()
            for name, value in self.step_feeds(tokens, past_len).items():
                io.bind_cpu_input(name, value)
            for name, value in past.items():
                io.bind_ortvalue_input(name, value)
            for name in self.outputs:
                io.bind_output(name, "cpu")
            self.sess.run_with_iobinding(io)
            results = io.get_outputs()
            logits = results[0].numpy()
            nxt = np.argmax(logits[:, -1, :], axis=-1).astype(np.int64)
            out.append(nxt)
            on_token(step)
            past_len += tokens.shape[1]
            past = {name: value for (name, _), value in zip(self.cache, results[1:])}
            tokens = nxt[:, None]
        return np.stack(out, axis=1)


def main():
    a = parse_args()
    with open(os.path.join(a.model_dir, "config.json")) as f:
        config = json.load(f)
    path = os.path.join(a.model_dir, "model.onnx")
    model = Model(session(path, a.intra, a.inter), config)
    vocab = config["vocab_size"]
    prompts = np.array(
        [[(3 + 37 * i + 101 * r) % vocab for i in range(a.prompt_len)] for r in range(a.batch)], dtype=np.int64
    )
    generate = model.generate_iobinding if a.mode == "iobinding" else model.generate_plain
    prefill_ms, decode_tps, first_tokens = [], [], []
    for rep in range(a.warmup + a.reps):
        first = []
        start = time.perf_counter()
        tokens = generate(prompts, a.new_tokens, lambda step: first.append(time.perf_counter()) if step == 0 else None)
        end = time.perf_counter()
        if rep >= a.warmup:
            prefill_ms.append((first[0] - start) * 1e3)
            decode_tps.append(a.batch * (a.new_tokens - 1) / (end - first[0]))
        first_tokens = tokens[0, :8].tolist()
    print(
        json.dumps(
            {
                "side": "python",
                "mode": a.mode,
                "onnxruntime": ort.__version__,
                "model": path,
                "batch": a.batch,
                "prompt_len": a.prompt_len,
                "new_tokens": a.new_tokens,
                "intra_threads": a.intra,
                "inter_threads": a.inter,
                "reps": a.reps,
                "prefill_ms_median": statistics.median(prefill_ms),
                "decode_tokens_per_s_median": statistics.median(decode_tps),
                "first_tokens": first_tokens,
            }
        )
    )


if __name__ == "__main__":
    main()
