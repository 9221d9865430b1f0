#!/usr/bin/env python3
"""Reference timing: the `tcobench stats` computation in SciPy / pandas / NumPy.

Not a dependency of tcobench: a tool to put the Rust timings
(`cargo bench -p tcobench-stats --bench groups`, `tcobench stats FILE ...`) next to what the
usual Python stack needs for the same work:

* descriptives per group (n, mean, sd, median, MAD x 1.4826, min, max, p50/p90/p95/p99, t CI of
  the mean, Tukey-fence outlier counts);
* a 10 000-resample percentile bootstrap of every group's median (NumPy);
* all k(k-1)/2 pairwise Welch t-tests with 95 % CIs and Holm adjustment (own NumPy code), plus
  Student t, Cohen's d and Hedges' g;
* one-way ANOVA (`scipy.stats.f_oneway`), Welch's ANOVA (NumPy formulas), Kruskal-Wallis
  (`scipy.stats.kruskal`).

Data: by default the synthetic data of `analysis/stats/benches/groups.rs` (1 000 000 rows in 100
groups, lognormal-ish, the same SplitMix64 / Box-Muller stream vectorised in NumPy, so the values
agree with the Rust bench up to the last bits of exp/log/cos). `--write FILE.parquet` stores them
for `tcobench stats FILE.parquet --by group --metric value`; `--file` reads a CSV or Parquet file
instead (with pandas), and its reading time is reported separately.

    python3 -m pip install --user scipy pandas numpy pyarrow
    python3 benches/scipy_groups.py                       # synthetic data, timed
    python3 benches/scipy_groups.py --write /tmp/g.parquet
    python3 benches/scipy_groups.py --file /tmp/g.parquet --by group --metric value

The numbers printed at the end (ANOVA F, Welch F, Kruskal-Wallis H, first pair) are there to
check that both implementations computed the same thing.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from scipy import stats

MASK = (1 << 64) - 1
GAMMA = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(seed: int, start: int, count: int) -> np.ndarray:
    """Outputs start+1 .. start+count of SplitMix64(seed), vectorised (state = seed + k*GAMMA)."""
    k = np.arange(start + 1, start + count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + k * GAMMA
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def synthetic(rows: int, groups: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """The data of analysis/stats/benches/groups.rs: exp(mu_g + sigma_g * z), z by Box-Muller."""
    per = rows // groups
    raw = splitmix64(seed, 0, 2 * per * groups)
    unit = ((raw >> np.uint64(11)) + np.uint64(1)).astype(np.float64) / float(1 << 53)
    u, v = unit[0::2], unit[1::2]
    z = np.sqrt(-2.0 * np.log(u)) * np.cos(2.0 * np.pi * v)
    out = []
    for g in range(groups):
        mu = np.log(100.0) + 0.002 * g
        sigma = 0.2 + 0.001 * g
        out.append((f"g{g:02d}", np.exp(mu + sigma * z[g * per:(g + 1) * per])))
    return out


def read(path: str, by: str, metric: str) -> list[tuple[str, np.ndarray]]:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        df = pd.read_parquet(path, columns=[by, metric])
    else:
        df = pd.read_csv(path, usecols=[by, metric], sep="\t" if path.endswith(".tsv") else ",")
    # groupby(sort=False) keeps the order of first appearance, like tcobench.
    return [(str(k), g.to_numpy(dtype=np.float64)) for k, g in df.groupby(by, sort=False)[metric]]


def descriptives(name: str, x: np.ndarray) -> dict:
    n = x.size
    mean = x.mean()
    sd = x.std(ddof=1)
    q1, median, q3, p90, p95, p99 = np.percentile(x, [25, 50, 75, 90, 95, 99])
    half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    iqr = q3 - q1
    severe = (x < q1 - 3 * iqr) | (x > q3 + 3 * iqr)
    mild = ((x < q1 - 1.5 * iqr) | (x > q3 + 1.5 * iqr)) & ~severe
    return {
        "name": name, "n": n, "mean": mean, "sd": sd, "median": median,
        "mad": 1.4826 * np.median(np.abs(x - median)), "min": x.min(), "max": x.max(),
        "p50": median, "p90": p90, "p95": p95, "p99": p99,
        "ci95_mean": [mean - half, mean + half],
        "outliers": {"mild": int(mild.sum()), "severe": int(severe.sum())},
    }


def bootstrap_median_ci(x: np.ndarray, resamples: int, rng: np.random.Generator,
                        chunk: int = 500) -> list[float]:
    """Percentile bootstrap of the median, `chunk` resamples at a time to bound memory."""
    n = x.size
    medians = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        medians[start:stop] = np.median(x[idx], axis=1)
    return list(np.percentile(medians, [2.5, 97.5]))


def holm(p: np.ndarray) -> np.ndarray:
    """R's p.adjust(p, "holm")."""
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


def pairwise(names, n, mean, var) -> list[dict]:
    i, j = np.triu_indices(len(names), k=1)
    se2a, se2b = var[i] / n[i], var[j] / n[j]
    se = np.sqrt(se2a + se2b)
    diff = mean[i] - mean[j]
    t = diff / se
    df = (se2a + se2b) ** 2 / (se2a ** 2 / (n[i] - 1) + se2b ** 2 / (n[j] - 1))
    p = 2 * stats.t.sf(np.abs(t), df)
    half = stats.t.ppf(0.975, df) * se
    p_holm = holm(p)
    dfs = n[i] + n[j] - 2
    sp = np.sqrt(((n[i] - 1) * var[i] + (n[j] - 1) * var[j]) / dfs)
    ts = diff / (sp * np.sqrt(1 / n[i] + 1 / n[j]))
    ps = 2 * stats.t.sf(np.abs(ts), dfs)
    d = diff / sp
    g = d * (1 - 3 / (4 * dfs - 1))
    return [
        {"a": names[a], "b": names[b],
         "welch": {"t": t[k], "df": df[k], "p": p[k], "p_holm": p_holm[k],
                   "ci95_diff": [diff[k] - half[k], diff[k] + half[k]]},
         "student": {"t": ts[k], "df": dfs[k], "p": ps[k]},
         "cohens_d": d[k], "hedges_g": g[k]}
        for k, (a, b) in enumerate(zip(i, j))
    ]


def welch_anova(n, mean, var) -> dict:
    k = n.size
    w = n / var
    sw = w.sum()
    grand = (w * mean).sum() / sw
    a = (w * (mean - grand) ** 2).sum() / (k - 1)
    lam = ((1 - w / sw) ** 2 / (n - 1)).sum()
    b = 1 + 2 * (k - 2) / (k * k - 1) * lam
    f = a / b
    df2 = (k * k - 1) / (3 * lam)
    return {"f": f, "df1": k - 1.0, "df2": df2, "p": stats.f.sf(f, k - 1, df2)}


def analyse(groups, resamples: int, seed: int) -> dict:
    names = [g for g, _ in groups]
    xs = [x for _, x in groups]
    rng = np.random.default_rng(seed)
    summaries = []
    for name, x in groups:
        s = descriptives(name, x)
        s["ci95_median"] = bootstrap_median_ci(x, resamples, rng)
        summaries.append(s)
    n = np.array([x.size for x in xs], dtype=np.float64)
    mean = np.array([x.mean() for x in xs])
    var = np.array([x.var(ddof=1) for x in xs])
    f = stats.f_oneway(*xs)
    kw = stats.kruskal(*xs)
    k = len(xs)
    return {
        "groups": summaries,
        "pairwise": pairwise(names, n, mean, var),
        "anova": {"f": f.statistic, "df_between": k - 1.0, "df_within": n.sum() - k,
                  "p": f.pvalue},
        "welch_anova": welch_anova(n, mean, var),
        "kruskal_wallis": {"h": kw.statistic, "df": k - 1.0, "p": kw.pvalue},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--data-seed", type=int, default=42, help="seed of the synthetic data")
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--file", help="read this CSV/Parquet file instead of generating data")
    ap.add_argument("--by", default="group")
    ap.add_argument("--metric", default="value")
    ap.add_argument("--write", help="write the synthetic data to this Parquet file and exit")
    ap.add_argument("--repeat", type=int, default=1, help="time the analysis this many times")
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.file:
        groups = read(args.file, args.by, args.metric)
    else:
        groups = synthetic(args.rows, args.groups, args.data_seed)
    t_data = time.perf_counter() - t0
    if args.write:
        # Interleave the groups row by row, so first appearance is g00, g01, ...
        per = min(x.size for _, x in groups)
        df = pd.DataFrame({
            args.by: np.tile(np.array([g for g, _ in groups], dtype=object), per),
            args.metric: np.stack([x[:per] for _, x in groups], axis=1).ravel(),
        })
        df.to_parquet(args.write, index=False)
        print(f"wrote {len(df)} rows in {len(groups)} groups to {args.write}")
        return

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = analyse(groups, args.resamples, args.seed)
        times.append(time.perf_counter() - t0)
    rows = sum(x.size for _, x in groups)
    p0 = result["pairwise"][0]
    print(json.dumps({
        "rows": rows,
        "groups": len(groups),
        "pairs": len(result["pairwise"]),
        "resamples": args.resamples,
        ("read_s" if args.file else "generate_s"): round(t_data, 3),
        "analysis_s": [round(t, 3) for t in times],
        "analysis_min_s": round(min(times), 3),
        "check": {
            "anova_f": result["anova"]["f"],
            "welch_anova_f": result["welch_anova"]["f"],
            "welch_anova_df2": result["welch_anova"]["df2"],
            "kruskal_h": result["kruskal_wallis"]["h"],
            "first_pair": [p0["a"], p0["b"], p0["welch"]["t"], p0["welch"]["p_holm"]],
            "first_group_ci95_median": result["groups"][0]["ci95_median"],
        },
        "versions": {"numpy": np.__version__, "scipy": __import__("scipy").__version__,
                     "pandas": pd.__version__},
    }, indent=2, default=float))


if __name__ == "__main__":
    main()
