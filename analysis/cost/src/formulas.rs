//! The cost, energy, carbon and TCO formulas: pure functions, one place, units in every name.
//!
//! Symbols used in the doc comments:
//!
//! * `P`: instance price, $/h;
//! * `T`: measured throughput of the *whole instance* while busy, generated tokens/s;
//! * `U`: utilisation, the busy fraction of wall-clock time, in (0, 1];
//! * `W`: average electrical power while busy, W; `W_idle`: power while idle, W;
//! * `PUE`: power usage effectiveness of the facility (≥ 1);
//! * `CI`: grid carbon intensity, gCO2e/kWh.
//!
//! Every input is validated (finite, positive where it must be, `U` in (0, 1], fractions in
//! [0, 1), PUE ≥ 1) and a violation is a [`FormulaError`] naming the input. A month is
//! [`HOURS_PER_MONTH`] = 8760 / 12 = 730 hours; a year is [`HOURS_PER_YEAR`] = 8760 hours.

use serde::{Deserialize, Serialize};

/// Hours in a (non-leap) year.
pub const HOURS_PER_YEAR: f64 = 8760.0;
/// Hours in an average month, 8760 / 12.
pub const HOURS_PER_MONTH: f64 = HOURS_PER_YEAR / 12.0;
/// Seconds per day.
pub const SECONDS_PER_DAY: f64 = 86_400.0;
/// One million tokens.
const MILLION: f64 = 1.0e6;

/// An input outside its domain.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{input} = {value}: {requirement}")]
pub struct FormulaError {
    /// Name of the offending input (with its unit).
    pub input: &'static str,
    /// The value given.
    pub value: f64,
    /// What the value must satisfy.
    pub requirement: &'static str,
}

type R<T> = Result<T, FormulaError>;

fn err<T>(input: &'static str, value: f64, requirement: &'static str) -> R<T> {
    Err(FormulaError {
        input,
        value,
        requirement,
    })
}

/// Checks that `value` is finite and > 0 (returns it), else names `input` in the error.
pub fn positive(input: &'static str, value: f64) -> R<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        err(input, value, "must be a finite number > 0")
    }
}

/// `value` must be finite and ≥ 0.
fn non_negative(input: &'static str, value: f64) -> R<f64> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        err(input, value, "must be a finite number >= 0")
    }
}

/// Utilisation must lie in (0, 1].
fn utilization(value: f64) -> R<f64> {
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        err("utilization", value, "must be in (0, 1]")
    }
}

/// PUE must be finite and ≥ 1.
fn pue(value: f64) -> R<f64> {
    if value.is_finite() && value >= 1.0 {
        Ok(value)
    } else {
        err("pue", value, "must be a finite number >= 1")
    }
}

/// A fraction in [0, 1).
fn fraction(input: &'static str, value: f64) -> R<f64> {
    if value.is_finite() && (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        err(input, value, "must be in [0, 1)")
    }
}

/// Dollars per one million generated tokens.
///
/// `$/1M tokens = P · 10⁶ / (3600 · T · U)`, with `P` in $/h, `T` in tokens/s, `U` in (0, 1].
pub fn usd_per_1m_tokens(price_usd_per_hour: f64, tokens_per_s: f64, util: f64) -> R<f64> {
    let p = positive("price_usd_per_hour", price_usd_per_hour)?;
    let t = positive("tokens_per_s", tokens_per_s)?;
    let u = utilization(util)?;
    Ok(p * MILLION / (3600.0 * t * u))
}

/// Generated tokens bought by one dollar.
///
/// `tokens/$ = 3600 · T · U / P`, with `P` in $/h, `T` in tokens/s, `U` in (0, 1].
pub fn tokens_per_usd(price_usd_per_hour: f64, tokens_per_s: f64, util: f64) -> R<f64> {
    let p = positive("price_usd_per_hour", price_usd_per_hour)?;
    let t = positive("tokens_per_s", tokens_per_s)?;
    let u = utilization(util)?;
    Ok(3600.0 * t * u / p)
}

/// Facility energy per one million generated tokens, kWh.
///
/// Busy time for 10⁶ tokens is `10⁶/T` s; at utilisation `U` the wall-clock time is
/// `10⁶/(T·U)` s, of which `10⁶·(1−U)/(T·U)` s are idle. Hence
///
/// `kWh/1M = PUE · [W · 10⁶/T + W_idle · 10⁶ · (1 − U)/(T · U)] / (3600 · 1000)`
///
/// which for `U = 1` (or no idle power given) is `W · PUE · 10⁶ / (3600 · T · 1000)`.
/// `W`, `W_idle` in W; `T` in tokens/s.
pub fn kwh_per_1m_tokens(
    watts: f64,
    pue_value: f64,
    tokens_per_s: f64,
    util: f64,
    idle_watts: Option<f64>,
) -> R<f64> {
    let w = positive("watts", watts)?;
    let pue_value = pue(pue_value)?;
    let t = positive("tokens_per_s", tokens_per_s)?;
    let u = utilization(util)?;
    let busy_j = w * MILLION / t;
    let idle_j = match idle_watts {
        Some(wi) => non_negative("idle_watts", wi)? * MILLION * (1.0 - u) / (t * u),
        None => 0.0,
    };
    Ok(pue_value * (busy_j + idle_j) / (3600.0 * 1000.0))
}

/// Embodied (manufacturing) emissions attributed to one million tokens, gCO2e.
///
/// `g/1M = embodied_kg · 1000 · (10⁶ / (3600 · T · U)) / (lifetime_years · 8760)`: the hardware's
/// embodied carbon spread evenly over its lifetime hours, charged for the wall-clock hours
/// needed to produce 10⁶ tokens at utilisation `U`.
pub fn embodied_gco2e_per_1m_tokens(
    embodied_kg: f64,
    lifetime_years: f64,
    tokens_per_s: f64,
    util: f64,
) -> R<f64> {
    let kg = non_negative("embodied_kg", embodied_kg)?;
    let years = positive("lifetime_years", lifetime_years)?;
    let t = positive("tokens_per_s", tokens_per_s)?;
    let u = utilization(util)?;
    let hours_per_1m = MILLION / (3600.0 * t * u);
    Ok(kg * 1000.0 * hours_per_1m / (years * HOURS_PER_YEAR))
}

/// Emissions per one million tokens, gCO2e.
///
/// `gCO2e/1M = kWh/1M · CI + embodied_g/1M`, with `CI` in gCO2e/kWh and the embodied share from
/// [`embodied_gco2e_per_1m_tokens`] (0 when unknown).
pub fn gco2e_per_1m_tokens(kwh_per_1m: f64, grid_g_per_kwh: f64, embodied_g_per_1m: f64) -> R<f64> {
    let kwh = non_negative("kwh_per_1m_tokens", kwh_per_1m)?;
    let ci = non_negative("grid_g_per_kwh", grid_g_per_kwh)?;
    let emb = non_negative("embodied_g_per_1m_tokens", embodied_g_per_1m)?;
    Ok(kwh * ci + emb)
}

/// Inputs of [`onprem_usd_per_hour`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OnPremCost {
    /// Purchase price, $.
    pub capex_usd: f64,
    /// Resale value at end of life, fraction of capex in [0, 1).
    pub residual_fraction: f64,
    /// Depreciation period, years.
    pub lifetime_years: f64,
    /// Average power, W.
    pub watts: f64,
    /// Facility PUE (≥ 1).
    pub pue: f64,
    /// Electricity price, $/kWh.
    pub usd_per_kwh: f64,
    /// Maintenance, support, space, $/h.
    pub maintenance_usd_per_hour: f64,
}

/// Hourly cost of owning a system, $/h.
///
/// `$/h = capex · (1 − residual) / (lifetime_years · 8760) + W · PUE · $/kWh / 1000 + maintenance`.
pub fn onprem_usd_per_hour(c: &OnPremCost) -> R<f64> {
    let capex = positive("capex_usd", c.capex_usd)?;
    let r = fraction("residual_fraction", c.residual_fraction)?;
    let years = positive("lifetime_years", c.lifetime_years)?;
    let w = non_negative("watts", c.watts)?;
    let pue_value = pue(c.pue)?;
    let kwh_price = non_negative("usd_per_kwh", c.usd_per_kwh)?;
    let maint = non_negative("maintenance_usd_per_hour", c.maintenance_usd_per_hour)?;
    Ok(capex * (1.0 - r) / (years * HOURS_PER_YEAR) + w * pue_value * kwh_price / 1000.0 + maint)
}

/// Running cost of an owned system, $/h: the energy and maintenance terms of
/// [`onprem_usd_per_hour`] without the depreciation.
///
/// `$/h = W · PUE · $/kWh / 1000 + maintenance`.
pub fn onprem_opex_usd_per_hour(c: &OnPremCost) -> R<f64> {
    onprem_usd_per_hour(c)?;
    Ok(c.watts * c.pue * c.usd_per_kwh / 1000.0 + c.maintenance_usd_per_hour)
}

/// Utilisation an owned system must reach for its $/1M tokens to equal the cloud instance's at
/// utilisation `cloud_util`, both delivering the same throughput `T` while busy.
///
/// From `P_onprem · 10⁶/(3600 · T · U*) = P_cloud · 10⁶/(3600 · T · U_cloud)`:
/// `U* = U_cloud · P_onprem / P_cloud`. A value above 1 means on-prem cannot match the cloud
/// price per token at any utilisation.
pub fn break_even_utilization(
    onprem_usd_per_hour: f64,
    cloud_usd_per_hour: f64,
    cloud_util: f64,
) -> R<f64> {
    let o = positive("onprem_usd_per_hour", onprem_usd_per_hour)?;
    let c = positive("cloud_usd_per_hour", cloud_usd_per_hour)?;
    let u = utilization(cloud_util)?;
    Ok(u * o / c)
}

/// On-prem ownership compared with renting, for a fleet of `instances` systems.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OnPremVsCloud {
    /// Hourly cost of one owned system, [`onprem_usd_per_hour`].
    pub usd_per_hour: f64,
    /// Its running cost without depreciation, [`onprem_opex_usd_per_hour`].
    pub opex_usd_per_hour: f64,
    /// On-prem $/1M tokens at the same throughput and utilisation.
    pub usd_per_1m_tokens: f64,
    /// Systems in the fleet (the cloud fleet's size).
    pub fleet_instances: f64,
    /// Fleet cost per month: `instances · $/h · 730`.
    pub usd_per_month: f64,
    /// Cloud fleet cost per month, `instances · P_cloud · 730` (with a cloud price).
    pub cloud_usd_per_month: Option<f64>,
    /// Months until buying pays back ([`break_even_months`]; `None`: never, or no cloud price).
    pub break_even_months: Option<f64>,
    /// Return on investment over `horizon_months` ([`roi`]; with a cloud price).
    pub roi: Option<f64>,
    /// [`break_even_utilization`] (with a cloud price).
    pub break_even_utilization: Option<f64>,
}

/// Compares owning `instances` systems with renting them at `cloud_usd_per_hour`: hourly and
/// monthly cost, payback months, ROI over `horizon_months`, break-even utilisation.
pub fn compare_onprem(
    c: &OnPremCost,
    tokens_per_s: f64,
    util: f64,
    instances: f64,
    cloud_usd_per_hour: Option<f64>,
    horizon_months: f64,
) -> R<OnPremVsCloud> {
    let hourly = onprem_usd_per_hour(c)?;
    let opex_hourly = onprem_opex_usd_per_hour(c)?;
    let n = positive("instances", instances)?;
    let mut out = OnPremVsCloud {
        usd_per_hour: hourly,
        opex_usd_per_hour: opex_hourly,
        usd_per_1m_tokens: usd_per_1m_tokens(hourly, tokens_per_s, util)?,
        fleet_instances: n,
        usd_per_month: n * hourly * HOURS_PER_MONTH,
        cloud_usd_per_month: None,
        break_even_months: None,
        roi: None,
        break_even_utilization: None,
    };
    if let Some(p) = cloud_usd_per_hour {
        let p = positive("price_usd_per_hour", p)?;
        let cloud_month = n * p * HOURS_PER_MONTH;
        let opex_month = n * opex_hourly * HOURS_PER_MONTH;
        let capex = n * c.capex_usd;
        out.cloud_usd_per_month = Some(cloud_month);
        out.break_even_months = break_even_months(cloud_month, capex, opex_month)?;
        out.roi = Some(roi(
            horizon_months,
            cloud_month,
            capex,
            opex_month,
            c.residual_fraction,
        )?);
        out.break_even_utilization = Some(break_even_utilization(hourly, p, util)?);
    }
    Ok(out)
}

/// Where the idle power `W_idle` charged for the `(1 − U)` share of wall-clock time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdlePowerSource {
    /// `energy.idle_watts` of the scenario (or of a variant laid over it).
    Scenario,
    /// The idle baseline the run measured before its matrix with its own power method
    /// (`manifest.json` → `power.idle_baseline`).
    MeasuredBaseline,
    /// Neither: idle time is charged at busy power (`W_idle = W`), an upper bound.
    BusyAssumed,
}

impl IdlePowerSource {
    /// The source of a selection's idle power: `recorded` when the selection says, else — for
    /// figures written before it was recorded — the scenario when an idle power is set.
    pub fn of(idle_watts: Option<f64>, recorded: Option<Self>) -> Self {
        match (idle_watts, recorded) {
            (None, _) => Self::BusyAssumed,
            (Some(_), Some(r)) if r != Self::BusyAssumed => r,
            (Some(_), _) => Self::Scenario,
        }
    }

    /// The source in words, as the report states it next to the figures it changes.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Scenario => "scenario input `energy.idle_watts`",
            Self::MeasuredBaseline => "the run's measured idle baseline",
            Self::BusyAssumed => "idle not measured: busy power assumed for idle time",
        }
    }
}

/// Average power over wall-clock time of a system busy a fraction `U` of it, W.
///
/// `W_avg = U · W + (1 − U) · W_idle`, with `W_idle = W` when no idle power is given (idle time
/// charged at busy power: [`IdlePowerSource::BusyAssumed`]).
pub fn average_watts(busy_watts: f64, idle_watts: Option<f64>, util: f64) -> R<f64> {
    let busy = positive("watts", busy_watts)?;
    let u = utilization(util)?;
    let idle = match idle_watts {
        Some(i) => non_negative("idle_watts", i)?,
        None => busy,
    };
    Ok(u * busy + (1.0 - u) * idle)
}

/// Inputs of [`size_workload`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Requests per day, R.
    pub requests_per_day: f64,
    /// Generated tokens per request.
    pub tokens_per_request: f64,
    /// Peak rate over average rate (≥ 1).
    pub peak_factor: f64,
    /// Measured capacity of one instance *at the latency SLO*, tokens/s (the `T` of a
    /// configuration whose latency meets the SLO).
    pub capacity_tokens_per_s: f64,
    /// Instance price, $/h.
    pub price_usd_per_hour: f64,
    /// Average power of one instance while busy, W (`None`: energy not computed).
    pub watts: Option<f64>,
    /// Power of one instance while idle, W (`None`: idle instances draw `watts`).
    pub idle_watts: Option<f64>,
    /// Facility PUE.
    pub pue: f64,
    /// Grid intensity, gCO2e/kWh (`None`: carbon not computed).
    pub grid_g_per_kwh: Option<f64>,
    /// Embodied emissions of one instance, kgCO2e, and its lifetime in years.
    pub embodied_kg_and_lifetime_years: Option<(f64, f64)>,
}

/// Result of [`size_workload`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sizing {
    /// Average demand, tokens/s.
    pub avg_tokens_per_s: f64,
    /// Peak demand, tokens/s.
    pub peak_tokens_per_s: f64,
    /// Instances needed to serve the peak.
    pub instances: u64,
    /// Average utilisation of the fleet.
    pub utilization: f64,
    /// Fleet cost per month, $.
    pub usd_per_month: f64,
    /// Fleet facility energy per month, kWh (`None` without watts).
    pub kwh_per_month: Option<f64>,
    /// Fleet emissions per month, kgCO2e (`None` without watts or grid intensity).
    pub kgco2e_per_month: Option<f64>,
}

/// Sizes a fleet for a workload.
///
/// * average demand `d = R · tokens_per_request / 86400` tokens/s, peak `d_peak = d · peak_factor`;
/// * `instances = ceil(d_peak / T)` (T = capacity of one instance at the SLO);
/// * `U = d / (instances · T)`;
/// * `$/month = instances · P · 730`;
/// * `kWh/month = instances · (U · W + (1 − U) · W_idle) · PUE · 730 / 1000` ([`average_watts`];
///   `W_idle = W` when not given — callers pass the run's measured idle baseline when the
///   scenario sets none, and say which they used: [`IdlePowerSource`]);
/// * `kgCO2e/month = kWh/month · CI / 1000 + instances · embodied_kg · 730 / (lifetime_years · 8760)`.
pub fn size_workload(w: &Workload) -> R<Sizing> {
    let r = positive("requests_per_day", w.requests_per_day)?;
    let tok = positive("tokens_per_request", w.tokens_per_request)?;
    let peak = positive("peak_factor", w.peak_factor)?;
    if peak < 1.0 {
        return err("peak_factor", peak, "must be >= 1 (peak over average)");
    }
    let t = positive("capacity_tokens_per_s", w.capacity_tokens_per_s)?;
    let p = positive("price_usd_per_hour", w.price_usd_per_hour)?;
    let pue_value = pue(w.pue)?;
    let avg = r * tok / SECONDS_PER_DAY;
    let peak_rate = avg * peak;
    let n = (peak_rate / t).ceil().max(1.0);
    let u = avg / (n * t);
    let usd = n * p * HOURS_PER_MONTH;
    let kwh = match w.watts {
        Some(watts) => {
            Some(n * average_watts(watts, w.idle_watts, u)? * pue_value * HOURS_PER_MONTH / 1000.0)
        }
        None => None,
    };
    let embodied_kg = match w.embodied_kg_and_lifetime_years {
        Some((kg, years)) => {
            let kg = non_negative("embodied_kg", kg)?;
            let years = positive("lifetime_years", years)?;
            n * kg * HOURS_PER_MONTH / (years * HOURS_PER_YEAR)
        }
        None => 0.0,
    };
    let kg = match (kwh, w.grid_g_per_kwh) {
        (Some(kwh), Some(ci)) => {
            Some(kwh * non_negative("grid_g_per_kwh", ci)? / 1000.0 + embodied_kg)
        }
        _ => None,
    };
    Ok(Sizing {
        avg_tokens_per_s: avg,
        peak_tokens_per_s: peak_rate,
        // `n` is a ceil of a finite positive ratio, ≥ 1.
        instances: n as u64,
        utilization: u,
        usd_per_month: usd,
        kwh_per_month: kwh,
        kgco2e_per_month: kg,
    })
}

/// Months after which buying on-prem is cheaper than renting.
///
/// `months = capex / (cloud_$/month − onprem_opex_$/month)`; `None` when the cloud is not dearer
/// than the on-prem running cost (the purchase never pays back).
pub fn break_even_months(
    cloud_usd_per_month: f64,
    capex_usd: f64,
    onprem_opex_usd_per_month: f64,
) -> R<Option<f64>> {
    let cloud = non_negative("cloud_usd_per_month", cloud_usd_per_month)?;
    let capex = positive("capex_usd", capex_usd)?;
    let opex = non_negative("onprem_opex_usd_per_month", onprem_opex_usd_per_month)?;
    let saving = cloud - opex;
    Ok((saving > 0.0).then(|| capex / saving))
}

/// Return on investment of buying instead of renting over a horizon (a ratio; 0.25 = 25 %).
///
/// `ROI = ((cloud_$/month − onprem_opex_$/month) · months + residual · capex − capex) / capex`:
/// the rent avoided net of running costs, plus what the hardware still fetches at the end of the
/// horizon (`residual` in [0, 1)), against the purchase price.
pub fn roi(
    horizon_months: f64,
    cloud_usd_per_month: f64,
    capex_usd: f64,
    onprem_opex_usd_per_month: f64,
    residual_fraction: f64,
) -> R<f64> {
    let h = positive("horizon_months", horizon_months)?;
    let cloud = non_negative("cloud_usd_per_month", cloud_usd_per_month)?;
    let capex = positive("capex_usd", capex_usd)?;
    let opex = non_negative("onprem_opex_usd_per_month", onprem_opex_usd_per_month)?;
    let r = fraction("residual_fraction", residual_fraction)?;
    Ok(((cloud - opex) * h + r * capex - capex) / capex)
}

/// Per-token API list prices, $ per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ApiPricing {
    /// Uncached input tokens, $/1M.
    pub input_usd_per_1m: f64,
    /// Output tokens, $/1M.
    pub output_usd_per_1m: f64,
    /// Cached input tokens, $/1M (`None`: same as uncached input).
    pub cached_input_usd_per_1m: Option<f64>,
}

/// Cost of one request on a per-token API, $.
///
/// `$/request = (i · (1 − c) · p_in + i · c · p_cached + o · p_out) / 10⁶`, with `i` input tokens,
/// `o` output tokens, `c` the cached share of the input in [0, 1], prices in $/1M tokens.
pub fn api_usd_per_request(
    api: &ApiPricing,
    input_tokens: f64,
    output_tokens: f64,
    cached_fraction: f64,
) -> R<f64> {
    let p_in = non_negative("input_usd_per_1m", api.input_usd_per_1m)?;
    let p_out = non_negative("output_usd_per_1m", api.output_usd_per_1m)?;
    let p_cached = match api.cached_input_usd_per_1m {
        Some(p) => non_negative("cached_input_usd_per_1m", p)?,
        None => p_in,
    };
    let i = non_negative("input_tokens", input_tokens)?;
    let o = positive("output_tokens", output_tokens)?;
    if !(cached_fraction.is_finite() && (0.0..=1.0).contains(&cached_fraction)) {
        return err("cached_fraction", cached_fraction, "must be in [0, 1]");
    }
    let c = cached_fraction;
    Ok((i * (1.0 - c) * p_in + i * c * p_cached + o * p_out) / MILLION)
}

/// API cost per one million *generated* tokens, $ — comparable with [`usd_per_1m_tokens`].
///
/// `$/1M output tokens = $/request · 10⁶ / o` (input tokens are charged to the output they
/// produce, as self-hosting's $/1M tokens charges the whole instance to generated tokens).
pub fn api_usd_per_1m_output_tokens(
    api: &ApiPricing,
    input_tokens: f64,
    output_tokens: f64,
    cached_fraction: f64,
) -> R<f64> {
    let per_request = api_usd_per_request(api, input_tokens, output_tokens, cached_fraction)?;
    Ok(per_request * MILLION / output_tokens)
}

/// Requests per day above which self-hosting is cheaper than the API.
///
/// `R* = selfhost_$/day / api_$/request`, where `selfhost_$/day = instances · P · 24` for a fleet
/// that stays up all day. Valid while the fleet can serve `R*` (check with [`size_workload`]).
pub fn break_even_requests_per_day(selfhost_usd_per_day: f64, api_usd_per_request: f64) -> R<f64> {
    let f = positive("selfhost_usd_per_day", selfhost_usd_per_day)?;
    let a = positive("api_usd_per_request", api_usd_per_request)?;
    Ok(f / a)
}

/// Cost per month of `requests_per_day` requests on a per-token API, $.
///
/// `$/month = R · $/request · 730 / 24` (an average month of 730 hours).
pub fn api_usd_per_month(requests_per_day: f64, usd_per_request: f64) -> R<f64> {
    let r = positive("requests_per_day", requests_per_day)?;
    let a = non_negative("api_usd_per_request", usd_per_request)?;
    Ok(r * a * HOURS_PER_MONTH / 24.0)
}

/// Self-hosting on a fleet compared with a per-token API.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ApiVsSelfHost {
    /// API cost of one request, [`api_usd_per_request`].
    pub usd_per_request: f64,
    /// API cost per 1M generated tokens, [`api_usd_per_1m_output_tokens`].
    pub usd_per_1m_output_tokens: f64,
    /// Self-hosted fleet per day: `instances · P · 24`.
    pub selfhost_usd_per_day: f64,
    /// Self-hosted instances.
    pub selfhost_instances: f64,
    /// [`break_even_requests_per_day`] for that fleet.
    pub break_even_requests_per_day: f64,
    /// API cost per month at the workload's request rate ([`api_usd_per_month`]).
    pub usd_per_month: Option<f64>,
}

/// Compares a per-token API with self-hosting on `instances` instances at
/// `selfhost_usd_per_hour` each; `requests_per_day`, when given, prices the API for a month.
pub fn compare_api(
    api: &ApiPricing,
    input_tokens: f64,
    output_tokens: f64,
    cached_fraction: f64,
    selfhost_usd_per_hour: f64,
    instances: f64,
    requests_per_day: Option<f64>,
) -> R<ApiVsSelfHost> {
    let per_request = api_usd_per_request(api, input_tokens, output_tokens, cached_fraction)?;
    let per_1m = api_usd_per_1m_output_tokens(api, input_tokens, output_tokens, cached_fraction)?;
    let selfhost_day = instances * selfhost_usd_per_hour * 24.0;
    Ok(ApiVsSelfHost {
        usd_per_request: per_request,
        usd_per_1m_output_tokens: per_1m,
        selfhost_usd_per_day: selfhost_day,
        selfhost_instances: instances,
        break_even_requests_per_day: break_even_requests_per_day(selfhost_day, per_request)?,
        usd_per_month: requests_per_day
            .map(|r| api_usd_per_month(r, per_request))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative comparison to 1e-9.
    fn close(got: f64, want: f64) {
        let tol = 1e-9 * want.abs().max(f64::MIN_POSITIVE);
        assert!((got - want).abs() <= tol, "got {got}, want {want}");
    }

    #[test]
    fn usd_per_1m_tokens_hand_computed() {
        // P = 3.6 $/h, T = 1000 tok/s, U = 0.5: 3.6·1e6/(3600·1000·0.5) = 3.6e6/1.8e6 = 2.0
        close(usd_per_1m_tokens(3.6, 1000.0, 0.5).unwrap(), 2.0);
        // P = 0.526, T = 250, U = 1: 0.526e6/900000 = 0.58444…
        close(
            usd_per_1m_tokens(0.526, 250.0, 1.0).unwrap(),
            0.526e6 / 900_000.0,
        );
    }

    #[test]
    fn tokens_per_usd_hand_computed() {
        // 3600·1000·0.5/3.6 = 500000
        close(tokens_per_usd(3.6, 1000.0, 0.5).unwrap(), 500_000.0);
        // inverse of $/1M: 1e6/2.0 = 500000
        close(
            1.0e6 / usd_per_1m_tokens(3.6, 1000.0, 0.5).unwrap(),
            tokens_per_usd(3.6, 1000.0, 0.5).unwrap(),
        );
    }

    #[test]
    fn kwh_per_1m_tokens_hand_computed() {
        // W = 300, PUE = 1.2, T = 100, U = 1: 300·1.2·1e6/(3600·100·1000) = 3.6e8/3.6e8 = 1.0
        close(
            kwh_per_1m_tokens(300.0, 1.2, 100.0, 1.0, None).unwrap(),
            1.0,
        );
        // idle ignored at U = 1
        close(
            kwh_per_1m_tokens(300.0, 1.2, 100.0, 1.0, Some(50.0)).unwrap(),
            1.0,
        );
        // U = 0.5, W_idle = 60: busy 300·1e6/100 = 3e6 J; idle 60·1e6·0.5/(100·0.5) = 6e5 J;
        // (3e6 + 6e5)·1.2/3.6e6 = 4.32e6/3.6e6 = 1.2
        close(
            kwh_per_1m_tokens(300.0, 1.2, 100.0, 0.5, Some(60.0)).unwrap(),
            1.2,
        );
        // U = 0.5 without idle: busy only, 3e6·1.2/3.6e6 = 1.0
        close(
            kwh_per_1m_tokens(300.0, 1.2, 100.0, 0.5, None).unwrap(),
            1.0,
        );
    }

    #[test]
    fn carbon_hand_computed() {
        // embodied 1500 kg, 5 y, T = 100, U = 0.5: hours per 1M = 1e6/(3600·50) = 5.5555…;
        // 1.5e6 g · 5.5555…/43800 = 8.333…e6/43800 = 190.2587…
        let hours = 1.0e6 / (3600.0 * 50.0);
        let want = 1.5e6 * hours / 43_800.0;
        close(
            embodied_gco2e_per_1m_tokens(1500.0, 5.0, 100.0, 0.5).unwrap(),
            want,
        );
        // 1.2 kWh · 400 g/kWh + 10 g = 490 g
        close(gco2e_per_1m_tokens(1.2, 400.0, 10.0).unwrap(), 490.0);
    }

    #[test]
    fn onprem_hand_computed() {
        // capex 87600, residual 0.25, 5 y: 87600·0.75/43800 = 1.5 $/h;
        // energy 1000 W·1.5·0.1 $/kWh/1000 = 0.15 $/h; maintenance 0.35 → 2.0 $/h
        let c = OnPremCost {
            capex_usd: 87_600.0,
            residual_fraction: 0.25,
            lifetime_years: 5.0,
            watts: 1000.0,
            pue: 1.5,
            usd_per_kwh: 0.1,
            maintenance_usd_per_hour: 0.35,
        };
        close(onprem_usd_per_hour(&c).unwrap(), 2.0);
    }

    #[test]
    fn sizing_hand_computed() {
        // R = 864000 req/day × 100 tok = 86.4e6 tok/day → avg 1000 tok/s; peak ×2.5 = 2500 tok/s;
        // T = 1000 → instances = ceil(2.5) = 3; U = 1000/3000 = 1/3;
        // $/month = 3 · 2 $/h · 730 = 4380;
        // kWh/month = 3 · (1/3·300 + 2/3·60) · 1.5 · 730/1000 = 3·140·1.5·0.73 = 459.9;
        // kg/month = 459.9·400/1000 + 3·1000·730/(4·8760) = 183.96 + 62.5 = 246.46
        let s = size_workload(&Workload {
            requests_per_day: 864_000.0,
            tokens_per_request: 100.0,
            peak_factor: 2.5,
            capacity_tokens_per_s: 1000.0,
            price_usd_per_hour: 2.0,
            watts: Some(300.0),
            idle_watts: Some(60.0),
            pue: 1.5,
            grid_g_per_kwh: Some(400.0),
            embodied_kg_and_lifetime_years: Some((1000.0, 4.0)),
        })
        .unwrap();
        close(s.avg_tokens_per_s, 1000.0);
        close(s.peak_tokens_per_s, 2500.0);
        assert_eq!(s.instances, 3);
        close(s.utilization, 1.0 / 3.0);
        close(s.usd_per_month, 4380.0);
        close(s.kwh_per_month.unwrap(), 459.9);
        close(s.kgco2e_per_month.unwrap(), 246.46);
    }

    #[test]
    fn sizing_without_energy_or_idle() {
        // avg = 86400·10/86400 = 10 tok/s, peak 10, T = 100 → 1 instance, U = 0.1;
        // idle defaults to W: kWh = 1·200·1·730/1000 = 146
        let mut w = Workload {
            requests_per_day: 86_400.0,
            tokens_per_request: 10.0,
            peak_factor: 1.0,
            capacity_tokens_per_s: 100.0,
            price_usd_per_hour: 1.0,
            watts: Some(200.0),
            idle_watts: None,
            pue: 1.0,
            grid_g_per_kwh: None,
            embodied_kg_and_lifetime_years: None,
        };
        let s = size_workload(&w).unwrap();
        assert_eq!(s.instances, 1);
        close(s.utilization, 0.1);
        close(s.kwh_per_month.unwrap(), 146.0);
        assert!(s.kgco2e_per_month.is_none());
        w.watts = None;
        assert!(size_workload(&w).unwrap().kwh_per_month.is_none());
        w.peak_factor = 0.5;
        assert_eq!(size_workload(&w).unwrap_err().input, "peak_factor");
    }

    #[test]
    fn idle_share_at_low_utilisation_hand_computed() {
        // 86400 requests/day × 1 token = 1 tok/s, peak ×2 = 2 tok/s, T = 2000 tok/s:
        // 1 instance, U = 1/2000 = 0.0005. Busy 51.6 W, measured idle 19.5 W, PUE 1.58:
        // W_avg = 0.0005·51.6 + 0.9995·19.5 = 0.0258 + 19.49025 = 19.51605 W;
        // kWh/month = 19.51605 · 1.58 · 730/1000 = 19.51605 · 1.1534 = 22.509812…;
        // kg/month at 400 g/kWh = 22.509812… · 0.4 = 9.003925…
        let mut w = Workload {
            requests_per_day: 86_400.0,
            tokens_per_request: 1.0,
            peak_factor: 2.0,
            capacity_tokens_per_s: 2000.0,
            price_usd_per_hour: 1.0,
            watts: Some(51.6),
            idle_watts: Some(19.5),
            pue: 1.58,
            grid_g_per_kwh: Some(400.0),
            embodied_kg_and_lifetime_years: None,
        };
        close(average_watts(51.6, Some(19.5), 0.0005).unwrap(), 19.51605);
        let s = size_workload(&w).unwrap();
        assert_eq!(s.instances, 1);
        close(s.utilization, 0.0005);
        close(s.kwh_per_month.unwrap(), 19.51605 * 1.1534);
        close(s.kgco2e_per_month.unwrap(), 19.51605 * 1.1534 * 0.4);
        // Without an idle figure the whole month is charged at busy power:
        // 51.6 · 1.1534 = 59.51544 kWh/month, 2.64× the measured-idle figure.
        w.idle_watts = None;
        close(average_watts(51.6, None, 0.0005).unwrap(), 51.6);
        close(size_workload(&w).unwrap().kwh_per_month.unwrap(), 59.51544);
        // Inputs are named.
        assert_eq!(
            average_watts(51.6, Some(-1.0), 0.5).unwrap_err().input,
            "idle_watts"
        );
        assert_eq!(
            average_watts(51.6, None, 0.0).unwrap_err().input,
            "utilization"
        );
    }

    #[test]
    fn idle_power_source_of_old_and_new_selections() {
        use IdlePowerSource::*;
        assert_eq!(IdlePowerSource::of(None, None), BusyAssumed);
        assert_eq!(
            IdlePowerSource::of(None, Some(MeasuredBaseline)),
            BusyAssumed
        );
        assert_eq!(IdlePowerSource::of(Some(20.0), None), Scenario);
        assert_eq!(
            IdlePowerSource::of(Some(20.0), Some(MeasuredBaseline)),
            MeasuredBaseline
        );
        assert_eq!(IdlePowerSource::of(Some(20.0), Some(BusyAssumed)), Scenario);
        assert!(BusyAssumed
            .describe()
            .contains("busy power assumed for idle time"));
    }

    #[test]
    fn break_even_and_roi_hand_computed() {
        // capex 30000, cloud 3000/month, opex 500/month: 30000/2500 = 12 months
        close(
            break_even_months(3000.0, 30_000.0, 500.0).unwrap().unwrap(),
            12.0,
        );
        assert_eq!(break_even_months(400.0, 30_000.0, 500.0).unwrap(), None);
        // 36 months, residual 0.1: (2500·36 + 3000 − 30000)/30000 = (90000 − 27000)/30000 = 2.1
        close(roi(36.0, 3000.0, 30_000.0, 500.0, 0.1).unwrap(), 2.1);
    }

    #[test]
    fn api_comparison_hand_computed() {
        // i = 1000 (c = 0.5), o = 500; p_in = 3, p_cached = 0.3, p_out = 15:
        // (1000·0.5·3 + 1000·0.5·0.3 + 500·15)/1e6 = (1500 + 150 + 7500)/1e6 = 0.00915 $
        let api = ApiPricing {
            input_usd_per_1m: 3.0,
            output_usd_per_1m: 15.0,
            cached_input_usd_per_1m: Some(0.3),
        };
        close(
            api_usd_per_request(&api, 1000.0, 500.0, 0.5).unwrap(),
            0.00915,
        );
        // per 1M output tokens: 0.00915·1e6/500 = 18.3
        close(
            api_usd_per_1m_output_tokens(&api, 1000.0, 500.0, 0.5).unwrap(),
            18.3,
        );
        // no cache price: (1000·3 + 500·15)/1e6 = 0.0105
        let plain = ApiPricing {
            cached_input_usd_per_1m: None,
            ..api
        };
        close(
            api_usd_per_request(&plain, 1000.0, 500.0, 0.5).unwrap(),
            0.0105,
        );
        // one instance at 2 $/h all day = 48 $/day; 48/0.00915 = 5245.9016…
        close(
            break_even_requests_per_day(48.0, 0.00915).unwrap(),
            48.0 / 0.00915,
        );
    }

    #[test]
    fn onprem_break_even_hand_computed() {
        // capex 87600, residual 0.25, 5 y → 1.5 $/h depreciation; energy 1000·1.5·0.1/1000 =
        // 0.15 $/h; maintenance 0.35 → 2.0 $/h owned, opex 0.5 $/h.
        let c = OnPremCost {
            capex_usd: 87_600.0,
            residual_fraction: 0.25,
            lifetime_years: 5.0,
            watts: 1000.0,
            pue: 1.5,
            usd_per_kwh: 0.1,
            maintenance_usd_per_hour: 0.35,
        };
        close(onprem_opex_usd_per_hour(&c).unwrap(), 0.5);
        // Cloud at 4 $/h, U = 0.8: on-prem matches at U* = 0.8 · 2/4 = 0.4.
        close(break_even_utilization(2.0, 4.0, 0.8).unwrap(), 0.4);
        // Two systems, T = 500 tok/s, U = 0.8, cloud 4 $/h:
        // owned $/month = 2·2·730 = 2920; cloud = 2·4·730 = 5840; opex/month = 2·0.5·730 = 730;
        // payback = 2·87600/(5840 − 730) = 175200/5110 = 34.2857… months;
        // on-prem $/1M = 2e6/(3600·500·0.8) = 1.3888…;
        // ROI over 36 months = ((5840 − 730)·36 + 0.25·175200 − 175200)/175200
        //                    = (183960 + 43800 − 175200)/175200 = 52560/175200 = 0.3
        let v = compare_onprem(&c, 500.0, 0.8, 2.0, Some(4.0), 36.0).unwrap();
        close(v.usd_per_hour, 2.0);
        close(v.usd_per_month, 2920.0);
        close(v.cloud_usd_per_month.unwrap(), 5840.0);
        close(v.break_even_months.unwrap(), 175_200.0 / 5110.0);
        close(v.usd_per_1m_tokens, 2.0e6 / 1.44e6);
        close(v.roi.unwrap(), 0.3);
        close(v.break_even_utilization.unwrap(), 0.4);
        // Cloud cheaper than the running cost: never pays back; U* = 0.8·2/0.4 = 4 > 1.
        let v = compare_onprem(&c, 500.0, 0.8, 1.0, Some(0.4), 36.0).unwrap();
        assert_eq!(v.break_even_months, None);
        close(v.break_even_utilization.unwrap(), 4.0);
        // Without a cloud price only the owned figures.
        let v = compare_onprem(&c, 500.0, 1.0, 1.0, None, 36.0).unwrap();
        assert!(v.cloud_usd_per_month.is_none() && v.break_even_utilization.is_none());
    }

    #[test]
    fn api_break_even_hand_computed() {
        // i = 200, o = 100, p_in = 1, p_out = 4: (200 + 400)/1e6 = 6e-4 $/request.
        let api = ApiPricing {
            input_usd_per_1m: 1.0,
            output_usd_per_1m: 4.0,
            cached_input_usd_per_1m: None,
        };
        // Fleet of 3 at 0.5 $/h: 3·0.5·24 = 36 $/day → break-even 36/6e-4 = 60000 req/day.
        // 100000 req/day on the API: 100000·6e-4 = 60 $/day · 730/24 = 1825 $/month.
        let v = compare_api(&api, 200.0, 100.0, 0.0, 0.5, 3.0, Some(100_000.0)).unwrap();
        close(v.usd_per_request, 6.0e-4);
        close(v.usd_per_1m_output_tokens, 6.0);
        close(v.selfhost_usd_per_day, 36.0);
        close(v.break_even_requests_per_day, 60_000.0);
        close(v.usd_per_month.unwrap(), 1825.0);
        assert!(compare_api(&api, 200.0, 100.0, 0.0, 0.5, 3.0, None)
            .unwrap()
            .usd_per_month
            .is_none());
        assert_eq!(
            api_usd_per_month(0.0, 1.0).unwrap_err().input,
            "requests_per_day"
        );
    }

    #[test]
    fn invalid_inputs_are_named() {
        assert_eq!(
            usd_per_1m_tokens(0.0, 1.0, 1.0).unwrap_err().input,
            "price_usd_per_hour"
        );
        assert_eq!(
            usd_per_1m_tokens(1.0, -1.0, 1.0).unwrap_err().input,
            "tokens_per_s"
        );
        assert_eq!(
            usd_per_1m_tokens(1.0, 1.0, 0.0).unwrap_err().input,
            "utilization"
        );
        assert_eq!(
            tokens_per_usd(1.0, 1.0, 1.5).unwrap_err().input,
            "utilization"
        );
        assert_eq!(
            tokens_per_usd(f64::NAN, 1.0, 1.0).unwrap_err().input,
            "price_usd_per_hour"
        );
        assert_eq!(
            kwh_per_1m_tokens(1.0, 0.9, 1.0, 1.0, None)
                .unwrap_err()
                .input,
            "pue"
        );
        assert_eq!(
            kwh_per_1m_tokens(1.0, 1.0, 1.0, 0.5, Some(-1.0))
                .unwrap_err()
                .input,
            "idle_watts"
        );
        assert_eq!(
            gco2e_per_1m_tokens(1.0, -1.0, 0.0).unwrap_err().input,
            "grid_g_per_kwh"
        );
        assert_eq!(
            embodied_gco2e_per_1m_tokens(1.0, 0.0, 1.0, 1.0)
                .unwrap_err()
                .input,
            "lifetime_years"
        );
        let mut c = OnPremCost {
            capex_usd: 1.0,
            residual_fraction: 1.0,
            lifetime_years: 1.0,
            watts: 1.0,
            pue: 1.0,
            usd_per_kwh: 0.1,
            maintenance_usd_per_hour: 0.0,
        };
        assert_eq!(
            onprem_usd_per_hour(&c).unwrap_err().input,
            "residual_fraction"
        );
        c.residual_fraction = 0.0;
        c.capex_usd = 0.0;
        assert_eq!(onprem_usd_per_hour(&c).unwrap_err().input, "capex_usd");
        assert_eq!(
            roi(0.0, 1.0, 1.0, 0.0, 0.0).unwrap_err().input,
            "horizon_months"
        );
        assert_eq!(
            break_even_months(1.0, -5.0, 0.0).unwrap_err().input,
            "capex_usd"
        );
        let api = ApiPricing {
            input_usd_per_1m: 1.0,
            output_usd_per_1m: 1.0,
            cached_input_usd_per_1m: None,
        };
        assert_eq!(
            api_usd_per_request(&api, 1.0, 1.0, 1.5).unwrap_err().input,
            "cached_fraction"
        );
        assert_eq!(
            break_even_requests_per_day(1.0, 0.0).unwrap_err().input,
            "api_usd_per_request"
        );
        let e = usd_per_1m_tokens(1.0, 1.0, 2.0).unwrap_err();
        assert_eq!(e.to_string(), "utilization = 2: must be in (0, 1]");
    }
}
