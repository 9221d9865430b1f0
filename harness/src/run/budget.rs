//! The budget of a run with `budget_usd`: spending on the run's clock, the warnings at its
//! thresholds, and the prediction that stops a run before a cell that would exceed it.

use indicatif::ProgressBar;
use tcobench_results::schema::BudgetRecord;

use crate::estimate::{self, fmt_usd, Calibration};
use crate::plan::Cell;
use crate::scenario::Budget;

/// Spending of a run with `budget_usd`: run time on the run's clock × the budget's rate, the
/// warnings already given, and the heuristic's calibration on the cells run so far.
#[derive(Debug)]
pub(crate) struct BudgetTracker {
    budget: Budget,
    start_ns: u64,
    /// Thresholds (fractions of the budget) not yet announced, ascending.
    pending_warnings: Vec<f64>,
    calibration: Calibration,
    /// What earlier attempts of a resumed run spent, $.
    pub(crate) spent_before_usd: f64,
}

/// Where and why the budget stopped a run.
#[derive(Debug)]
pub(crate) struct BudgetStop {
    /// The first cell not run.
    index: usize,
    /// Spent when the run stopped, $.
    spent_usd: f64,
    /// The numbers behind the decision, in words.
    pub(crate) why: String,
}

/// Fractions of the budget at which a warning is printed, once each.
const BUDGET_WARNINGS: [f64; 4] = [0.5, 0.75, 0.9, 1.0];

impl BudgetTracker {
    pub(crate) fn new(budget: &Budget, start_ns: u64) -> Self {
        BudgetTracker {
            budget: budget.clone(),
            start_ns,
            pending_warnings: BUDGET_WARNINGS.to_vec(),
            calibration: Calibration::default(),
            spent_before_usd: 0.0,
        }
    }

    fn spent_usd(&self, now_ns: u64) -> f64 {
        let hours = now_ns.saturating_sub(self.start_ns) as f64 / 3.6e12;
        self.spent_before_usd + hours * self.budget.usd_per_hour
    }

    pub(crate) fn record(&self) -> BudgetRecord {
        self.record_at(self.start_ns)
    }

    pub(crate) fn record_at(&self, now_ns: u64) -> BudgetRecord {
        BudgetRecord {
            usd: self.budget.usd,
            usd_per_hour: self.budget.usd_per_hour,
            rate_source: self.budget.rate_source.clone(),
            spent_usd: self.spent_usd(now_ns),
        }
    }

    /// Prints a warning for each threshold crossed since the last call.
    pub(crate) fn warn(&mut self, now_ns: u64, bar: &ProgressBar) {
        let spent = self.spent_usd(now_ns);
        let fraction = spent / self.budget.usd;
        while let Some(&t) = self.pending_warnings.first() {
            if fraction < t {
                break;
            }
            self.pending_warnings.remove(0);
            let what = if t >= 1.0 {
                "exceeded".to_string()
            } else {
                format!("{:.0} % spent", t * 100.0)
            };
            bar.suspend(|| {
                eprintln!(
                    "warning: budget {what}: {} of {} ({} $/h, {})",
                    fmt_usd(spent),
                    fmt_usd(self.budget.usd),
                    tcobench_results::fmt_sig(self.budget.usd_per_hour, 4),
                    self.budget.rate_source
                )
            });
        }
    }

    /// Calibrates the heuristic with a cell that completed in `elapsed_ns`.
    pub(crate) fn learn(&mut self, cell: &Cell, elapsed_ns: u64) {
        if let Some(h) = estimate::heuristic_cell_s(cell) {
            self.calibration.add(elapsed_ns as f64 / 1e9, h);
        }
    }

    /// The predicted seconds and cost of `cell`, when its model size is known.
    fn predict(&self, cell: &Cell) -> Option<(f64, f64)> {
        let s = estimate::heuristic_cell_s(cell)? * self.calibration.factor();
        Some((s, s / 3600.0 * self.budget.usd_per_hour))
    }

    fn prediction_words(&self, cell: &Cell) -> String {
        match self.predict(cell) {
            Some((s, usd)) => format!(
                "predicted {} ({}, {})",
                fmt_usd(usd),
                estimate::fmt_duration(s),
                self.calibration.describe("of this run")
            ),
            None => "no prediction (model size unknown)".into(),
        }
    }

    /// Why the run must stop before `cell`, if spent + predicted exceeds the budget.
    pub(crate) fn stop_before(&self, cell: &Cell, now_ns: u64) -> Option<BudgetStop> {
        let spent = self.spent_usd(now_ns);
        let predicted = self.predict(cell).map_or(0.0, |p| p.1);
        (spent + predicted > self.budget.usd).then(|| BudgetStop {
            index: cell.index,
            spent_usd: spent,
            why: format!(
                "spent {} of {} ({} % at {} $/h, {}); cell #{} {}; spent + predicted = {} > {}",
                fmt_usd(spent),
                fmt_usd(self.budget.usd),
                tcobench_results::fmt_sig(100.0 * spent / self.budget.usd, 3),
                tcobench_results::fmt_sig(self.budget.usd_per_hour, 4),
                self.budget.rate_source,
                cell.index,
                self.prediction_words(cell),
                fmt_usd(spent + predicted),
                fmt_usd(self.budget.usd)
            ),
        })
    }

    /// The `error` of a cell skipped because of `stop`.
    pub(crate) fn skip_message(&self, cell: &Cell, stop: &BudgetStop) -> String {
        if cell.index == stop.index {
            format!("skipped for budget: {}", stop.why)
        } else {
            format!(
                "skipped for budget: the run stopped before cell #{} with {} of {} spent; this cell: {}",
                stop.index,
                fmt_usd(stop.spent_usd),
                fmt_usd(self.budget.usd),
                self.prediction_words(cell)
            )
        }
    }
}
