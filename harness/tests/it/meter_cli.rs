//! `tcobench meter import | calibrate | apply` on a mock run with a synthetic meter log.

use std::path::Path;

use serde_json::Value;

use crate::common::{run_scenario, tcobench, write, MOCK};

const BAD_INPUT: i32 = 2;

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The mock source draws 50 W; the meter sees `1.1 × 50 + 25 = 80` W through the whole run,
/// logged every millisecond (the mock's windows, on its virtual clock, last a few ms) with its
/// clock `skew_ms` behind the host's.
fn meter_log(run: &Path, skew_ms: i64) -> String {
    let manifest = json(&run.join("manifest.json"));
    let origin = chrono::DateTime::parse_from_rfc3339(manifest["started_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let end_ms = manifest["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["window_end_ms"].as_f64())
        .fold(0.0, f64::max) as i64;
    let mut csv = String::from("# synthetic meter\ntimestamp,watts\n");
    let mut t = -20;
    while t <= end_ms + 20 {
        let at = chrono::DateTime::from_timestamp_millis(origin + t - skew_ms).unwrap();
        csv.push_str(&format!(
            "{},80\n",
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
        t += 1;
    }
    csv
}

#[test]
fn import_calibrate_and_apply_recover_the_meter_s_gain() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "mock.yaml", MOCK);
    let run = run_scenario(dir.path(), &scenario);
    let log = write(dir.path(), "meter.csv", &meter_log(&run, 700));

    let out = tcobench(
        &[
            "meter",
            "import",
            run.to_str().unwrap(),
            log.to_str().unwrap(),
            "--offset-ms",
            "700",
            "--scope",
            "wall plug",
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let import = json(&run.join("meter.json"));
    assert_eq!(import["offset_ms"], 700.0);
    assert_eq!(import["ours_method"], "mock");
    let cells = import["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4, "{import:#}");
    // The table names each cell in full, so cells that differ only at the end stay apart.
    for c in cells {
        let id = c["cell_id"].as_str().unwrap();
        assert!(stdout.lines().any(|l| l.starts_with(id)), "{id}: {stdout}");
    }
    for c in cells {
        let window_s = (c["window_end_ms"].as_f64().unwrap()
            - c["window_start_ms"].as_f64().unwrap())
            / 1000.0;
        // Constant 80 W: the trapezoid rule is exact.
        let meter_j = c["meter_j"].as_f64().expect("meter figure");
        assert!((meter_j - 80.0 * window_s).abs() < 1e-6 * meter_j, "{c}");
        // Ours: 50 W over the requests inside the window (no more than the window).
        let ours = c["ours_j"].as_f64().unwrap();
        assert!(ours > 0.0 && ours <= 50.0 * window_s * (1.0 + 1e-9), "{c}");
    }
    assert!(stdout.contains("median meter/ours ratio"), "{stdout}");

    // Calibrate: constant power, so only a gain is identifiable.
    let cal_path = dir.path().join("cal.json");
    let out = tcobench(
        &[
            "meter",
            "calibrate",
            run.to_str().unwrap(),
            "--device",
            "test-host",
            "--out",
            cal_path.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cal = json(&cal_path);
    assert_eq!(cal["offset_fitted"], false);
    let gain = cal["gain"].as_f64().unwrap();
    // Least squares through the origin: Σ ours·meter / Σ ours².
    let (sxy, sxx) = cells.iter().fold((0.0, 0.0), |(a, b), c| {
        let (o, m) = (
            c["ours_j"].as_f64().unwrap(),
            c["meter_j"].as_f64().unwrap(),
        );
        (a + o * m, b + o * o)
    });
    assert!(
        (gain - sxy / sxx).abs() < 1e-9 * gain,
        "{gain} vs {}",
        sxy / sxx
    );
    assert!(gain > 1.5, "the meter sees 80 W against our 50 W: {gain}");

    // Apply: stats.json carries calibrated J/token = gain × measured (offset 0).
    let out = tcobench(
        &[
            "meter",
            "apply",
            run.to_str().unwrap(),
            cal_path.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = json(&run.join("stats.json"));
    let calibrated = stats["meter"]["calibrated"].as_array().unwrap();
    assert_eq!(calibrated.len(), 4);
    for c in calibrated {
        let measured = c["measured_j_per_token"].as_f64().unwrap();
        let cal = c["calibrated_j_per_token"].as_f64().unwrap();
        assert!((cal - gain * measured).abs() < 1e-9 * cal, "{c}");
    }
    assert!(stats["meter"]["import"]["cells"].is_array());
    // Both reports show the meter beside ours and the calibrated figures.
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for report in [&md, &html] {
        assert!(report.contains("External power meter"), "{report}");
        assert!(report.contains("Calibrated energy"));
        assert!(report.contains("wall plug"));
    }
    let shown: f64 = md
        .split("E_calibrated = ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|g| g.parse().ok())
        .expect("the calibration's gain in report.md");
    assert!((shown - gain).abs() < 1e-4 * gain, "{shown} vs {gain}");
}

#[test]
fn bad_meter_input_is_located_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "mock.yaml", MOCK);
    let run = run_scenario(dir.path(), &scenario);
    let r = run.to_str().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "timestamp,watts\n1700000000,5\n1700000001,abc\n",
            "bad.csv:3:12: key watts: `abc` is not a power in watts",
        ),
        (
            "time,volts\n1,5\n",
            "bad.csv:1:1: key header: the header names no power column",
        ),
        (
            // A year before the run: no window is covered.
            "timestamp,watts\n2001-01-01T00:00:00Z,5\n2001-01-01T00:00:01Z,5\n",
            "which holds no cell's measured window",
        ),
    ];
    for (text, message) in cases {
        let log = write(dir.path(), "bad.csv", text);
        let out = tcobench(&["meter", "import", r, log.to_str().unwrap()], dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(BAD_INPUT), "{err}");
        assert!(err.starts_with("error: ") && err.contains(message), "{err}");
        assert!(
            !run.join("meter.json").exists(),
            "nothing written on bad input"
        );
    }
    // A clock offset that is not a number is refused before anything is computed.
    let log = write(dir.path(), "ok.csv", "timestamp,watts\n1,5\n2,5\n");
    for offset in ["NaN", "inf"] {
        let out = tcobench(
            &[
                "meter",
                "import",
                r,
                log.to_str().unwrap(),
                "--offset-ms",
                offset,
            ],
            dir.path(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(BAD_INPUT), "{err}");
        assert!(err.contains("--offset-ms must be a finite number"), "{err}");
    }
    assert!(!run.join("meter.json").exists());
    // A calibration of another energy method is refused.
    let cal = write(
        dir.path(),
        "cal.json",
        r#"{"schema_version":1,"device":"d","ours_method":"rapl","ours_scope":"cpu-package",
"meter_scope":"wall","gain":1.1,"gain_se":null,"offset_w":3.0,"offset_se":null,
"offset_fitted":true,"r_squared":null,"max_rel_residual":0.0,"windows":3,"runs":[],"fitted_at":""}"#,
    );
    let out = tcobench(&["meter", "apply", r, cal.to_str().unwrap()], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(BAD_INPUT), "{err}");
    assert!(
        err.contains(
            "calibrates `rapl` energy (cpu-package); this run measured with `mock` (mock)"
        ),
        "{err}"
    );
    // Malformed JSON is located.
    let broken = write(dir.path(), "broken.json", "{\"gain\": 1.1,\n  oops}");
    let out = tcobench(&["meter", "apply", r, broken.to_str().unwrap()], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(BAD_INPUT), "{err}");
    assert!(err.contains("broken.json:2:3"), "{err}");
    assert!(!run.join("calibration.json").exists());
}
