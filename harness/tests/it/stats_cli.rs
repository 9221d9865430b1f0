//! `tcobench stats` end to end: R's PlantGrowth through the binary (CSV and Parquet), the JSON
//! shape, seeding, the text report and bad input.

use std::path::{Path, PathBuf};
use std::process::Output;

use polars::prelude::*;
use serde_json::Value;
use tcobench_results::io;
use tcobench_results::schema::files;

use crate::common::{run_scenario, tcobench, write, MOCK};

const CTRL: [f64; 10] = [4.17, 5.58, 5.18, 6.11, 4.50, 4.61, 5.17, 4.53, 5.33, 5.14];
const TRT1: [f64; 10] = [4.81, 4.17, 4.41, 3.59, 5.87, 3.83, 6.03, 4.89, 4.32, 4.69];
const TRT2: [f64; 10] = [6.31, 5.12, 5.54, 5.50, 5.37, 5.29, 4.92, 6.15, 5.80, 5.26];

/// PlantGrowth interleaved row by row (ctrl, trt1, trt2, ctrl, …). Reversed, the rows put trt2
/// first, which no sorting of the names would.
fn plant_rows() -> Vec<(&'static str, f64)> {
    (0..10)
        .flat_map(|i| [("ctrl", CTRL[i]), ("trt1", TRT1[i]), ("trt2", TRT2[i])])
        .collect()
}

fn plant_csv(dir: &Path, name: &str, rows: &[(&str, f64)]) -> PathBuf {
    let mut text = String::from("weight,group\n");
    for (g, w) in rows {
        text.push_str(&format!("{w},{g}\n"));
    }
    write(dir, name, &text)
}

fn plant_parquet(dir: &Path, name: &str, rows: &[(&str, f64)]) -> PathBuf {
    let p = dir.join(name);
    let mut df = DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "weight".into(),
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            ),
            Column::new("group".into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(&p).unwrap();
    ParquetWriter::new(file).finish(&mut df).unwrap();
    p
}

fn stats(dir: &Path, file: &Path, extra: &[&str]) -> Output {
    let file = file.to_str().unwrap();
    let mut args = vec!["stats", file, "--by", "group", "--metric", "weight"];
    args.extend_from_slice(extra);
    tcobench(&args, dir)
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn num(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing or not a number in {v:#}"))
}

fn assert_rel(v: &Value, pointer: &str, want: f64) {
    let got = num(v, pointer);
    assert!(
        (got - want).abs() <= 1e-6 * want.abs(),
        "{pointer}: {got} vs R {want}"
    );
}

fn assert_interval(v: &Value, pointer: &str) {
    let lo = num(v, &format!("{pointer}/0"));
    let hi = num(v, &format!("{pointer}/1"));
    assert!(lo <= hi, "{pointer}: [{lo}, {hi}]");
    assert_eq!(v.pointer(pointer).unwrap().as_array().unwrap().len(), 2);
}

/// Every key of the documented `tcobench stats --json` shape.
fn assert_shape(v: &Value) {
    let groups = v["groups"].as_array().expect("groups");
    assert!(!groups.is_empty());
    for (i, _) in groups.iter().enumerate() {
        let g = format!("/groups/{i}");
        assert!(v.pointer(&format!("{g}/name")).unwrap().is_string());
        for key in [
            "n", "mean", "sd", "median", "mad", "min", "max", "p50", "p90", "p95", "p99",
        ] {
            num(v, &format!("{g}/{key}"));
        }
        assert_interval(v, &format!("{g}/ci95_mean"));
        assert_interval(v, &format!("{g}/ci95_median"));
        num(v, &format!("{g}/outliers/mild"));
        num(v, &format!("{g}/outliers/severe"));
    }
    let pairs = v["pairwise"].as_array().expect("pairwise");
    assert_eq!(pairs.len(), groups.len() * (groups.len() - 1) / 2);
    for (i, _) in pairs.iter().enumerate() {
        let p = format!("/pairwise/{i}");
        assert!(v.pointer(&format!("{p}/a")).unwrap().is_string());
        assert!(v.pointer(&format!("{p}/b")).unwrap().is_string());
        for key in ["t", "df", "p", "p_holm"] {
            num(v, &format!("{p}/welch/{key}"));
        }
        assert_interval(v, &format!("{p}/welch/ci95_diff"));
        for key in ["t", "df", "p"] {
            num(v, &format!("{p}/student/{key}"));
        }
        num(v, &format!("{p}/cohens_d"));
        num(v, &format!("{p}/hedges_g"));
    }
    for key in ["f", "df_between", "df_within", "p"] {
        num(v, &format!("/anova/{key}"));
    }
    for key in ["f", "df1", "df2", "p"] {
        num(v, &format!("/welch_anova/{key}"));
    }
    for key in ["h", "df", "p"] {
        num(v, &format!("/kruskal_wallis/{key}"));
    }
}

fn group_names(v: &Value) -> Vec<&str> {
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect()
}

/// The JSON without what the bootstrap seed may change.
fn without_bootstrap(v: &Value) -> Value {
    let mut v = v.clone();
    for g in v["groups"].as_array_mut().unwrap() {
        g.as_object_mut().unwrap().remove("ci95_median");
    }
    for p in v["pairwise"].as_array_mut().unwrap() {
        p.as_object_mut().unwrap().remove("rel_change_ci95");
    }
    v.as_object_mut().unwrap().remove("bootstrap");
    v
}

#[test]
fn plant_growth_matches_r() {
    let dir = tempfile::tempdir().unwrap();
    let csv = plant_csv(dir.path(), "plant.csv", &plant_rows());
    let v = json(&stats(dir.path(), &csv, &["--json"]));
    assert_shape(&v);
    assert_eq!(group_names(&v), vec!["ctrl", "trt1", "trt2"]);
    // R: summary(aov(weight ~ group, PlantGrowth)); oneway.test(…); kruskal.test(…).
    assert_rel(&v, "/anova/f", 4.846087862380136);
    assert_eq!(num(&v, "/anova/df_between"), 2.0);
    assert_eq!(num(&v, "/anova/df_within"), 27.0);
    assert_rel(&v, "/anova/p", 0.015909958325622912);
    assert_rel(&v, "/welch_anova/f", 5.180972408113194);
    assert_eq!(num(&v, "/welch_anova/df1"), 2.0);
    assert_rel(&v, "/welch_anova/df2", 17.128418616644137);
    assert_rel(&v, "/kruskal_wallis/h", 7.988228749443715);
    assert_eq!(num(&v, "/kruskal_wallis/df"), 2.0);
    assert_rel(&v, "/kruskal_wallis/p", 0.018423755731471966);
    // R: mean and sd per group; t.test(ctrl, trt1).
    assert_rel(&v, "/groups/0/mean", 5.032);
    assert_rel(&v, "/groups/0/sd", 0.5830913783924056);
    assert_eq!(num(&v, "/groups/0/n"), 10.0);
    assert_eq!(v["pairwise"][0]["a"], "ctrl");
    assert_eq!(v["pairwise"][0]["b"], "trt1");
    assert_eq!(v["pairwise"][2]["a"], "trt1");
    assert_eq!(v["pairwise"][2]["b"], "trt2");
    assert_rel(&v, "/pairwise/0/welch/t", 1.1912603818487033);
    assert_rel(&v, "/pairwise/0/welch/df", 16.523585056859297);

    // Another first-appearance order gives the same groups in that order.
    let mut rev = plant_rows();
    rev.reverse();
    let csv_rev = plant_csv(dir.path(), "plant-rev.csv", &rev);
    let w = json(&stats(dir.path(), &csv_rev, &["--json"]));
    assert_eq!(group_names(&w), vec!["trt2", "trt1", "ctrl"]);
    assert_rel(&w, "/anova/f", 4.846087862380136);
}

#[test]
fn parquet_gives_the_same_json_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let rows = plant_rows();
    let csv = plant_csv(dir.path(), "plant.csv", &rows);
    // No .parquet extension: the format is sniffed from the magic bytes.
    let pq = plant_parquet(dir.path(), "plant.bin", &rows);
    let a = stats(dir.path(), &csv, &["--json", "--seed", "3"]);
    let b = stats(dir.path(), &pq, &["--json", "--seed", "3"]);
    json(&a);
    assert_eq!(
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
}

#[test]
fn the_seed_only_moves_the_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let csv = plant_csv(dir.path(), "plant.csv", &plant_rows());
    let run = |seed: &str| {
        stats(
            dir.path(),
            &csv,
            &["--json", "--seed", seed, "--resamples", "2000"],
        )
    };
    let a1 = run("1");
    let a2 = run("1");
    assert_eq!(a1.stdout, a2.stdout, "same seed, same bytes");
    let a = json(&a1);
    assert_eq!(num(&a, "/bootstrap/resamples"), 2000.0);
    let seeds: Vec<Value> = (2..8).map(|s| json(&run(&s.to_string()))).collect();
    for b in &seeds {
        assert_eq!(without_bootstrap(&a), without_bootstrap(b));
    }
    // Resampled medians of 10 values take few distinct values, so compare across several seeds.
    let medians = |v: &Value| {
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["ci95_median"].clone())
            .collect::<Vec<_>>()
    };
    assert!(
        seeds.iter().any(|b| medians(b) != medians(&a)),
        "the seed changes some bootstrap CI"
    );
}

#[test]
fn text_report_has_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let csv = plant_csv(dir.path(), "plant.csv", &plant_rows());
    let out = stats(dir.path(), &csv, &["--seed", "9", "--resamples", "500"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Descriptives",
        "ctrl",
        "5.032",
        "[4.615, 5.449]",
        "Pairwise comparisons",
        "p_holm",
        "Hedges' g",
        "not significant",
        "  significant",
        "one-way ANOVA",
        "F = 4.846",
        "(2, 27)",
        "Welch ANOVA",
        "Kruskal–Wallis",
        "H = 7.988",
        "500 resamples, seed 9",
        "trt1 (2 mild, 0 severe)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // trt1 vs trt2 is the one pair significant after Holm (p_holm = 0.0279).
    let line = text
        .lines()
        .find(|l| l.contains("trt1") && l.contains("trt2"))
        .unwrap();
    assert!(
        line.trim_end().ends_with(" significant") && !line.contains("not"),
        "{line}"
    );
}

fn bad(dir: &Path, args: &[&str], needles: &[&str]) {
    let out = tcobench(args, dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}: no report on bad input");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
    }
}

#[test]
fn bad_input_exits_2_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = plant_csv(d, "plant.csv", &plant_rows());
    let p = csv.to_str().unwrap();
    bad(
        d,
        &["stats", p, "--by", "group", "--metric", "height"],
        &["plant.csv", "`height`", "`weight`, `group`"],
    );
    bad(
        d,
        &["stats", p, "--by", "grp", "--metric", "weight"],
        &["plant.csv", "`grp`"],
    );
    let text = "weight,group\n1,a\n2,a\n3,b\nheavy,b\n";
    let nn = write(d, "non-numeric.csv", text);
    bad(
        d,
        &[
            "stats",
            nn.to_str().unwrap(),
            "--by",
            "group",
            "--metric",
            "weight",
        ],
        &["non-numeric.csv", "`weight`", "str", "row 4", "`heavy`"],
    );
    let one = write(d, "lonely.csv", "weight,group\n1,a\n2,a\n3,b\n4,c\n5,c\n");
    bad(
        d,
        &[
            "stats",
            one.to_str().unwrap(),
            "--by",
            "group",
            "--metric",
            "weight",
        ],
        &["lonely.csv", "`b`", "1 observation"],
    );
    for (name, text) in [("empty.csv", ""), ("header-only.csv", "weight,group\n")] {
        let e = write(d, name, text);
        bad(
            d,
            &[
                "stats",
                e.to_str().unwrap(),
                "--by",
                "group",
                "--metric",
                "weight",
            ],
            &[name, "no data rows"],
        );
    }
    bad(
        d,
        &[
            "stats",
            "missing.parquet",
            "--by",
            "group",
            "--metric",
            "weight",
        ],
        &["missing.parquet", "cannot read"],
    );
    bad(
        d,
        &[
            "stats",
            p,
            "--by",
            "group",
            "--metric",
            "weight",
            "--resamples",
            "0",
        ],
        &["--resamples"],
    );
    // A non-numeric Parquet column says its type.
    let pq = d.join("typed.parquet");
    let mut df = DataFrame::new(
        4,
        vec![
            Column::new("weight".into(), ["1", "2", "3", "4"]),
            Column::new("group".into(), ["a", "a", "b", "b"]),
        ],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(&pq).unwrap())
        .finish(&mut df)
        .unwrap();
    bad(
        d,
        &[
            "stats",
            pq.to_str().unwrap(),
            "--by",
            "group",
            "--metric",
            "weight",
        ],
        &["typed.parquet", "`weight`", "dtype str"],
    );
}

#[test]
fn pooled_pairwise_and_adjustment_options() {
    let dir = tempfile::tempdir().unwrap();
    let csv = plant_csv(dir.path(), "plant.csv", &plant_rows());
    // R: pairwise.t.test(PlantGrowth$weight, PlantGrowth$group) → 0.194 / 0.175 / 0.013 (Holm).
    let v = json(&stats(dir.path(), &csv, &["--json", "--pooled"]));
    let ps: Vec<f64> = v["pairwise_pooled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["p_adj"].as_f64().unwrap())
        .collect();
    for (got, r) in ps.iter().zip([0.194, 0.175, 0.013]) {
        assert!((got - r).abs() < 0.0005, "{ps:?}");
    }
    // BH never exceeds Holm; p_holm is reported whatever the choice.
    let bh = json(&stats(dir.path(), &csv, &["--json", "--adjust", "bh"]));
    for p in bh["pairwise"].as_array().unwrap() {
        let w = &p["welch"];
        assert!(w["p_adj"].as_f64().unwrap() <= w["p_holm"].as_f64().unwrap() + 1e-15);
    }
    assert_eq!(bh["adjust"], "BenjaminiHochberg");
    let none = json(&stats(dir.path(), &csv, &["--json", "--adjust", "none"]));
    let w = &none["pairwise"][0]["welch"];
    assert_eq!(w["p_adj"], w["p"]);
}

/// Flips one byte in the middle of `path`: its bytes no longer match `path.sha256`.
fn damage(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// `stats` on a damaged file of a run folder: bad input naming the file once, with the repair
/// that fits the file; each repair is then carried out and works.
#[test]
fn a_damaged_run_file_is_named_once_with_the_repair_that_fits_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scenario = write(d, "s.yaml", MOCK);
    let run = run_scenario(d, &scenario);
    let run_text = run.to_str().unwrap();
    let stats_of = |file: &Path| {
        let f = file.to_str().unwrap();
        tcobench(&["stats", f, "--by", "model", "--metric", "e2e_ms"], d)
    };
    let rejected = |file: &Path| {
        let out = stats_of(file);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        let f = file.to_str().unwrap();
        assert!(
            err.starts_with(&format!("error: {f}: corrupt file: its SHA-256 is ")),
            "{err}"
        );
        assert_eq!(err.matches(&format!("{f}:")).count(), 1, "{err}");
        err
    };

    // A cell's own file: only running the cell again repairs it.
    let cells = run.join(files::CELLS);
    let cell = std::fs::read_dir(&cells)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let cell_file = cell.join(files::REQUESTS);
    damage(&cell_file);
    let err = rejected(&cell_file);
    assert!(
        err.contains(&format!(
            "remove the cell's folder {} and run the cell again: `tcobench run --resume {run_text}`",
            cell.display()
        )),
        "{err}"
    );
    assert!(!err.contains("merges them again"), "{err}");
    // What the hint rules out: with the cell's folder in place, `--resume` takes the cell as
    // committed and meets the same damage.
    let resume = |d: &Path| tcobench(&["run", "--resume", run_text, "--no-log", "--quiet"], d);
    let out = resume(d);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("corrupt file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The hint: the folder goes, the cell runs again.
    std::fs::remove_dir_all(&cell).unwrap();
    let out = resume(d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    io::read_parquet(&cell_file).unwrap();

    // The merged table: `collect` merges it again.
    let merged = run.join(files::REQUESTS);
    damage(&merged);
    let err = rejected(&merged);
    assert!(
        err.ends_with(&format!(
            "it is merged from the run's cells: `tcobench collect {run_text}` merges them again\n"
        )),
        "{err}"
    );
    let out = tcobench(&["collect", run_text], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stats_of(&merged).status.success());

    // A file outside any run folder has no run to repair it from.
    let lone = d.join("lone.parquet");
    std::fs::copy(&merged, &lone).unwrap();
    std::fs::copy(io::checksum_path(&merged), io::checksum_path(&lone)).unwrap();
    damage(&lone);
    let err = rejected(&lone);
    assert!(err.contains("restore it from a copy"), "{err}");
    assert!(!err.contains("tcobench collect"), "{err}");
}

/// The `n` of every group of a `stats --json` analysis.
fn group_sizes(v: &Value) -> Vec<u64> {
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["n"].as_u64().unwrap())
        .collect()
}

/// On a run's own `requests.parquet`, `stats` counts what the run's statistics count: timed,
/// successful requests; `--all-rows` keeps warm-ups and failures.
#[test]
fn a_runs_requests_file_leaves_out_warmups_unless_all_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scenario = write(d, "s.yaml", MOCK);
    let run = run_scenario(d, &scenario);
    let file = run.join(files::REQUESTS);
    let f = file.to_str().unwrap();
    // MOCK: 2 models × 2 batch sizes, 1 warm-up + 4 timed requests per cell.
    let out = tcobench(
        &["stats", f, "--by", "model", "--metric", "e2e_ms", "--json"],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns = group_sizes(&json(&out));
    assert_eq!(ns, [8, 8], "two cells × four timed requests per model");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("4 warm-up and 0 failed request(s) left out"),
        "{err}"
    );
    let out = tcobench(
        &[
            "stats",
            f,
            "--by",
            "model",
            "--metric",
            "e2e_ms",
            "--json",
            "--all-rows",
        ],
        d,
    );
    let ns = group_sizes(&json(&out));
    assert_eq!(ns, [10, 10]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("left out"));
    let out = tcobench(&["stats", f, "--by", "model", "--metric", "e2e_ms"], d);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("16 rows in 2 groups"), "{text}");
    assert!(text.contains("--all-rows keeps them"), "{text}");
}
