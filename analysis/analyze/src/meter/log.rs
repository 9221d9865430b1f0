//! Reading a power meter's or BMC's log: a CSV of `timestamp,watts` (Unix s/ms or RFC 3339),
//! columns found by name, every problem located by line and column.

use serde::{Deserialize, Serialize};

use super::*;

/// One meter reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeterSample {
    /// Unix time, milliseconds.
    pub unix_ms: f64,
    /// Power, watts.
    pub watts: f64,
}

/// A parsed meter log.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterLog {
    /// Samples in time order (strictly increasing).
    pub samples: Vec<MeterSample>,
    /// How timestamps were read (e.g. "RFC 3339", "Unix seconds").
    pub time_format: String,
    /// Remarks a reader should know (timestamps read as UTC, …).
    pub notes: Vec<String>,
}

impl MeterLog {
    /// Median spacing of the samples, ms (`None` with fewer than two samples).
    pub fn median_interval_ms(&self) -> Option<f64> {
        let mut d: Vec<f64> = self
            .samples
            .windows(2)
            .map(|w| w[1].unix_ms - w[0].unix_ms)
            .collect();
        if d.is_empty() {
            return None;
        }
        d.sort_by(f64::total_cmp);
        let n = d.len();
        Some(if n % 2 == 1 {
            d[n / 2]
        } else {
            (d[n / 2 - 1] + d[n / 2]) / 2.0
        })
    }
}

fn located(path: &str, line: usize, column: usize, key: &str, message: String) -> MeterError {
    MeterError::Located {
        path: path.to_string(),
        line,
        column,
        key: key.to_string(),
        message,
    }
}

/// Parses a timestamp: Unix seconds or milliseconds (a number; above 1e11 it is taken as ms),
/// RFC 3339 (`2026-11-23T18:00:00.250Z`), or a zone-less `YYYY-MM-DD[T ]HH:MM:SS[.fff]`, read as
/// UTC. Returns Unix ms and the format's name.
fn parse_time(s: &str) -> Result<(f64, &'static str), String> {
    if let Ok(v) = s.parse::<f64>() {
        if !v.is_finite() || v < 0.0 {
            return Err(format!("`{s}` is not a time"));
        }
        return Ok(if v > 1e11 {
            (v, "Unix milliseconds")
        } else {
            (v * 1000.0, "Unix seconds")
        });
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok((t.timestamp_micros() as f64 / 1000.0, "RFC 3339"));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Ok((
                t.and_utc().timestamp_micros() as f64 / 1000.0,
                "date and time without a zone, read as UTC",
            ));
        }
    }
    Err(format!(
        "`{s}` is not a time (expected Unix seconds or ms, RFC 3339, or YYYY-MM-DD HH:MM:SS[.fff])"
    ))
}

/// Splits a CSV line on `sep`, honouring double quotes; returns each field with the 1-based
/// character column it starts at.
fn split_fields(line: &str, sep: char) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut start = 1;
    let mut quoted = false;
    for (i, c) in line.chars().enumerate() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push((start, field.trim().to_string()));
                field.clear();
                start = i + 2;
            }
            c => field.push(c),
        }
    }
    out.push((start, field.trim().to_string()));
    out
}

/// Reads a meter log: a header line naming a timestamp column (one of [`TIME_COLUMNS`]) and a
/// power column (one of [`WATTS_COLUMNS`]), separated by commas, semicolons or tabs; then one
/// sample per line. Blank lines and lines starting with `#` are skipped. Times must increase
/// strictly, watts must be finite and not negative.
pub fn parse_meter_csv(text: &str, path: &str) -> Result<MeterLog, MeterError> {
    // Spreadsheet exports often begin with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((header_line, header)) = lines.next() else {
        return Err(MeterError::Unusable {
            path: path.into(),
            message: "no header line: expected e.g. `timestamp,watts`".into(),
        });
    };
    let sep = [',', ';', '\t']
        .into_iter()
        .max_by_key(|s| header.matches(*s).count())
        .unwrap_or(',');
    let names: Vec<(usize, String)> = split_fields(header, sep);
    let find = |wanted: &[&str]| {
        names
            .iter()
            .position(|(_, n)| wanted.iter().any(|w| n.eq_ignore_ascii_case(w)))
    };
    let (Some(ti), Some(wi)) = (find(&TIME_COLUMNS), find(&WATTS_COLUMNS)) else {
        return Err(located(
            path,
            header_line,
            1,
            "header",
            format!(
                "the header names no {} column (accepted: {} / {}); found: {}",
                if find(&TIME_COLUMNS).is_none() {
                    "timestamp"
                } else {
                    "power"
                },
                TIME_COLUMNS.join(", "),
                WATTS_COLUMNS.join(", "),
                names
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let (time_key, watts_key) = (names[ti].1.clone(), names[wi].1.clone());
    let mut samples: Vec<MeterSample> = Vec::new();
    let mut formats = std::collections::BTreeSet::new();
    for (line_no, line) in lines {
        let fields = split_fields(line, sep);
        let get = |i: usize, key: &str| {
            fields.get(i).cloned().ok_or_else(|| {
                located(
                    path,
                    line_no,
                    line.chars().count() + 1,
                    key,
                    format!(
                        "the line has {} fields; the header has {}",
                        fields.len(),
                        names.len()
                    ),
                )
            })
        };
        let (tcol, ts) = get(ti, &time_key)?;
        let (wcol, ws) = get(wi, &watts_key)?;
        let (unix_ms, format) =
            parse_time(&ts).map_err(|m| located(path, line_no, tcol, &time_key, m))?;
        let watts = ws
            .parse::<f64>()
            .ok()
            .filter(|w| w.is_finite() && *w >= 0.0)
            .ok_or_else(|| {
                located(
                    path,
                    line_no,
                    wcol,
                    &watts_key,
                    format!("`{ws}` is not a power in watts (a finite number ≥ 0)"),
                )
            })?;
        if let Some(prev) = samples.last() {
            if unix_ms <= prev.unix_ms {
                return Err(located(
                    path,
                    line_no,
                    tcol,
                    &time_key,
                    format!("`{ts}` is not after the previous sample's time"),
                ));
            }
        }
        formats.insert(format);
        samples.push(MeterSample { unix_ms, watts });
    }
    if samples.len() < 2 {
        return Err(MeterError::Unusable {
            path: path.into(),
            message: format!(
                "{} sample(s): a meter log needs at least two",
                samples.len()
            ),
        });
    }
    if formats.len() > 1 {
        return Err(MeterError::Unusable {
            path: path.into(),
            message: format!(
                "timestamps mix formats ({}); use one",
                formats.into_iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let time_format = formats.into_iter().next().unwrap_or_default().to_string();
    let mut notes = Vec::new();
    if time_format.contains("without a zone") {
        notes.push("the log's timestamps carry no time zone; they were read as UTC".into());
    }
    Ok(MeterLog {
        samples,
        time_format,
        notes,
    })
}
