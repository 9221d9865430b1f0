// tcobench TCO calculator: the interactive section of report.html.
//
// Plain JavaScript with no dependency and no network access. It reads the measured figures the
// report embeds as JSON (`#tco-data`), reads the reader's inputs (`#tco-form`) and writes each
// result into its `<output data-key=…>`, with the full-precision number in `data-value` (empty
// when the figure cannot be computed). Text from the run (cell labels, instance names) only ever
// reaches the page through `textContent`, never as markup.
//
// Every formula mirrors one function of `analysis/cost/src/formulas.rs`, operation for
// operation and in the same order, so the page and `tcobench tco` agree to the last bit on the
// same inputs; the input checks and their messages mirror the Rust ones too. Change both together.
(function () {
  "use strict";

  var dataElement = document.getElementById("tco-data");
  var form = document.getElementById("tco-form");
  if (!dataElement || !form) {
    return;
  }
  var data = JSON.parse(dataElement.textContent);

  // formulas.rs: HOURS_PER_YEAR, HOURS_PER_MONTH, SECONDS_PER_DAY, MILLION.
  var HOURS_PER_YEAR = 8760.0;
  var HOURS_PER_MONTH = HOURS_PER_YEAR / 12.0;
  var SECONDS_PER_DAY = 86400.0;
  var MILLION = 1.0e6;

  // formulas.rs: FormulaError — an input outside its domain, displayed as `input = value: requirement`.
  function FormulaError(input, value, requirement) {
    this.input = input;
    this.value = value;
    this.requirement = requirement;
    this.message = input + " = " + fmtValue(value) + ": " + requirement;
  }

  // Rust's `{}` of an f64: `NaN`, `inf`, `-inf`, or the shortest round-trip digits.
  function fmtValue(v) {
    if (typeof v !== "number") {
      return String(v);
    }
    if (v === Infinity) {
      return "inf";
    }
    if (v === -Infinity) {
      return "-inf";
    }
    return String(v);
  }

  // formulas.rs: err
  function fail(input, value, requirement) {
    throw new FormulaError(input, value, requirement);
  }

  // formulas.rs: positive
  function positive(input, value) {
    if (Number.isFinite(value) && value > 0.0) {
      return value;
    }
    return fail(input, value, "must be a finite number > 0");
  }

  // formulas.rs: non_negative
  function nonNegative(input, value) {
    if (Number.isFinite(value) && value >= 0.0) {
      return value;
    }
    return fail(input, value, "must be a finite number >= 0");
  }

  // formulas.rs: utilization
  function utilization(value) {
    if (Number.isFinite(value) && value > 0.0 && value <= 1.0) {
      return value;
    }
    return fail("utilization", value, "must be in (0, 1]");
  }

  // formulas.rs: pue
  function pue(value) {
    if (Number.isFinite(value) && value >= 1.0) {
      return value;
    }
    return fail("pue", value, "must be a finite number >= 1");
  }

  // formulas.rs: usd_per_1m_tokens — $/1M tokens = P · 10⁶ / (3600 · T · U).
  function usdPer1mTokens(priceUsdPerHour, tokensPerS, util) {
    var p = positive("price_usd_per_hour", priceUsdPerHour);
    var t = positive("tokens_per_s", tokensPerS);
    var u = utilization(util);
    return p * MILLION / (3600.0 * t * u);
  }

  // formulas.rs: tokens_per_usd — tokens/$ = 3600 · T · U / P.
  function tokensPerUsd(priceUsdPerHour, tokensPerS, util) {
    var p = positive("price_usd_per_hour", priceUsdPerHour);
    var t = positive("tokens_per_s", tokensPerS);
    var u = utilization(util);
    return 3600.0 * t * u / p;
  }

  // formulas.rs: kwh_per_1m_tokens —
  // kWh/1M = PUE · [W · 10⁶/T + W_idle · 10⁶ · (1 − U)/(T · U)] / (3600 · 1000).
  function kwhPer1mTokens(watts, pueValue, tokensPerS, util, idleWatts) {
    var w = positive("watts", watts);
    var pv = pue(pueValue);
    var t = positive("tokens_per_s", tokensPerS);
    var u = utilization(util);
    var busyJ = w * MILLION / t;
    var idleJ = 0.0;
    if (idleWatts !== null) {
      idleJ = nonNegative("idle_watts", idleWatts) * MILLION * (1.0 - u) / (t * u);
    }
    return pv * (busyJ + idleJ) / (3600.0 * 1000.0);
  }

  // formulas.rs: embodied_gco2e_per_1m_tokens —
  // g/1M = embodied_kg · 1000 · (10⁶ / (3600 · T · U)) / (lifetime_years · 8760).
  function embodiedGco2ePer1mTokens(embodiedKg, lifetimeYears, tokensPerS, util) {
    var kg = nonNegative("embodied_kg", embodiedKg);
    var years = positive("lifetime_years", lifetimeYears);
    var t = positive("tokens_per_s", tokensPerS);
    var u = utilization(util);
    var hoursPer1m = MILLION / (3600.0 * t * u);
    return kg * 1000.0 * hoursPer1m / (years * HOURS_PER_YEAR);
  }

  // formulas.rs: gco2e_per_1m_tokens — gCO2e/1M = kWh/1M · CI + embodied g/1M.
  function gco2ePer1mTokens(kwhPer1m, gridGPerKwh, embodiedGPer1m) {
    var kwh = nonNegative("kwh_per_1m_tokens", kwhPer1m);
    var ci = nonNegative("grid_g_per_kwh", gridGPerKwh);
    var emb = nonNegative("embodied_g_per_1m_tokens", embodiedGPer1m);
    return kwh * ci + emb;
  }

  // formulas.rs: size_workload — instances = ceil(peak demand / T), U = demand / (instances · T),
  // $/month = instances · P · 730, kWh/month = instances · (U · W + (1 − U) · W_idle) · PUE · 730
  // / 1000, kgCO2e/month = kWh/month · CI / 1000 + instances · embodied_kg · 730 / (years · 8760).
  // `w` has the fields of the Rust `Workload` (null for None; embodied as [kg, years] or null).
  function sizeWorkload(w) {
    var r = positive("requests_per_day", w.requests_per_day);
    var tok = positive("tokens_per_request", w.tokens_per_request);
    var peak = positive("peak_factor", w.peak_factor);
    if (peak < 1.0) {
      fail("peak_factor", peak, "must be >= 1 (peak over average)");
    }
    var t = positive("capacity_tokens_per_s", w.capacity_tokens_per_s);
    var p = positive("price_usd_per_hour", w.price_usd_per_hour);
    var pv = pue(w.pue);
    var avg = r * tok / SECONDS_PER_DAY;
    var peakRate = avg * peak;
    var n = Math.max(Math.ceil(peakRate / t), 1.0);
    var u = avg / (n * t);
    var usd = n * p * HOURS_PER_MONTH;
    var kwh = null;
    if (w.watts !== null) {
      var busy = positive("watts", w.watts);
      var idle = w.idle_watts !== null ? nonNegative("idle_watts", w.idle_watts) : busy;
      kwh = n * (u * busy + (1.0 - u) * idle) * pv * HOURS_PER_MONTH / 1000.0;
    }
    var embodiedKg = 0.0;
    if (w.embodied_kg_and_lifetime_years !== null) {
      var kg = nonNegative("embodied_kg", w.embodied_kg_and_lifetime_years[0]);
      var years = positive("lifetime_years", w.embodied_kg_and_lifetime_years[1]);
      embodiedKg = n * kg * HOURS_PER_MONTH / (years * HOURS_PER_YEAR);
    }
    var kgco2e = null;
    if (kwh !== null && w.grid_g_per_kwh !== null) {
      kgco2e = kwh * nonNegative("grid_g_per_kwh", w.grid_g_per_kwh) / 1000.0 + embodiedKg;
    }
    return {
      avg_tokens_per_s: avg,
      peak_tokens_per_s: peakRate,
      instances: n,
      utilization: u,
      usd_per_month: usd,
      kwh_per_month: kwh,
      kgco2e_per_month: kgco2e
    };
  }

  // formulas.rs: fraction
  function fraction(input, value) {
    if (Number.isFinite(value) && value >= 0.0 && value < 1.0) {
      return value;
    }
    return fail(input, value, "must be in [0, 1)");
  }

  // formulas.rs: onprem_usd_per_hour —
  // $/h = capex · (1 − residual) / (lifetime_years · 8760) + W · PUE · $/kWh / 1000 + maintenance.
  // `c` has the fields of the Rust `OnPremCost`.
  function onpremUsdPerHour(c) {
    var capex = positive("capex_usd", c.capex_usd);
    var r = fraction("residual_fraction", c.residual_fraction);
    var years = positive("lifetime_years", c.lifetime_years);
    var w = nonNegative("watts", c.watts);
    var pv = pue(c.pue);
    var kwhPrice = nonNegative("usd_per_kwh", c.usd_per_kwh);
    var maint = nonNegative("maintenance_usd_per_hour", c.maintenance_usd_per_hour);
    return capex * (1.0 - r) / (years * HOURS_PER_YEAR) + w * pv * kwhPrice / 1000.0 + maint;
  }

  // formulas.rs: onprem_opex_usd_per_hour — W · PUE · $/kWh / 1000 + maintenance.
  function onpremOpexUsdPerHour(c) {
    onpremUsdPerHour(c);
    return c.watts * c.pue * c.usd_per_kwh / 1000.0 + c.maintenance_usd_per_hour;
  }

  // formulas.rs: break_even_months — capex / (cloud $/month − on-prem opex $/month), null: never.
  function breakEvenMonths(cloudUsdPerMonth, capexUsd, opexUsdPerMonth) {
    var cloud = nonNegative("cloud_usd_per_month", cloudUsdPerMonth);
    var capex = positive("capex_usd", capexUsd);
    var opex = nonNegative("onprem_opex_usd_per_month", opexUsdPerMonth);
    var saving = cloud - opex;
    return saving > 0.0 ? capex / saving : null;
  }

  // formulas.rs: break_even_utilization — U* = U_cloud · P_onprem / P_cloud.
  function breakEvenUtilization(onpremUsdPerHourValue, cloudUsdPerHour, cloudUtil) {
    var o = positive("onprem_usd_per_hour", onpremUsdPerHourValue);
    var c = positive("cloud_usd_per_hour", cloudUsdPerHour);
    var u = utilization(cloudUtil);
    return u * o / c;
  }

  // formulas.rs: compare_onprem (the figures the calculator shows; ROI is left to the CLI).
  function compareOnprem(c, tokensPerS, util, instances, cloudUsdPerHour) {
    var hourly = onpremUsdPerHour(c);
    var opexHourly = onpremOpexUsdPerHour(c);
    var n = positive("instances", instances);
    var out = {
      usd_per_hour: hourly,
      usd_per_1m_tokens: usdPer1mTokens(hourly, tokensPerS, util),
      usd_per_month: n * hourly * HOURS_PER_MONTH,
      break_even_months: null,
      break_even_utilization: null
    };
    var p = positive("price_usd_per_hour", cloudUsdPerHour);
    var cloudMonth = n * p * HOURS_PER_MONTH;
    var opexMonth = n * opexHourly * HOURS_PER_MONTH;
    var capex = n * c.capex_usd;
    out.break_even_months = breakEvenMonths(cloudMonth, capex, opexMonth);
    out.break_even_utilization = breakEvenUtilization(hourly, p, util);
    return out;
  }

  // formulas.rs: api_usd_per_request —
  // $/request = (i · (1 − c) · p_in + i · c · p_cached + o · p_out) / 10⁶.
  function apiUsdPerRequest(api, inputTokens, outputTokens, cachedFraction) {
    var pIn = nonNegative("input_usd_per_1m", api.input_usd_per_1m);
    var pOut = nonNegative("output_usd_per_1m", api.output_usd_per_1m);
    var pCached = api.cached_input_usd_per_1m !== null
      ? nonNegative("cached_input_usd_per_1m", api.cached_input_usd_per_1m)
      : pIn;
    var i = nonNegative("input_tokens", inputTokens);
    var o = positive("output_tokens", outputTokens);
    if (!(Number.isFinite(cachedFraction) && cachedFraction >= 0.0 && cachedFraction <= 1.0)) {
      fail("cached_fraction", cachedFraction, "must be in [0, 1]");
    }
    var c = cachedFraction;
    return (i * (1.0 - c) * pIn + i * c * pCached + o * pOut) / MILLION;
  }

  // formulas.rs: api_usd_per_month — R · $/request · 730 / 24.
  function apiUsdPerMonth(requestsPerDay, usdPerRequest) {
    var r = positive("requests_per_day", requestsPerDay);
    var a = nonNegative("api_usd_per_request", usdPerRequest);
    return r * a * HOURS_PER_MONTH / 24.0;
  }

  // formulas.rs: compare_api — API $/request and $/1M generated tokens, the self-hosted fleet's
  // $/day (instances · P · 24) and the break-even requests/day (fleet $/day / API $/request).
  function compareApi(api, inputTokens, outputTokens, cachedFraction, selfhostUsdPerHour, instances, requestsPerDay) {
    var perRequest = apiUsdPerRequest(api, inputTokens, outputTokens, cachedFraction);
    var per1m = perRequest * MILLION / outputTokens;
    var selfhostDay = instances * selfhostUsdPerHour * 24.0;
    var f = positive("selfhost_usd_per_day", selfhostDay);
    var a = positive("api_usd_per_request", perRequest);
    return {
      usd_per_request: perRequest,
      usd_per_1m_output_tokens: per1m,
      break_even_requests_per_day: f / a,
      usd_per_month: requestsPerDay !== null ? apiUsdPerMonth(requestsPerDay, perRequest) : null
    };
  }

  // ------------------------------------------------------------------------------------------
  // The form
  // ------------------------------------------------------------------------------------------

  function el(id) {
    return document.getElementById(id);
  }

  var cellSelect = el("tco-cell");
  var offerSelect = el("tco-offer");
  var CUSTOM = "custom";

  // Formula input name → the form field that feeds it, to mark it invalid.
  var FIELD_OF_INPUT = {
    price_usd_per_hour: "tco-price",
    replicas: "tco-replicas",
    utilization: "tco-utilization",
    pue: "tco-pue",
    idle_watts: "tco-idle-watts",
    usd_per_kwh: "tco-usd-per-kwh",
    grid_g_per_kwh: "tco-grid",
    embodied_kg: "tco-embodied-kg",
    lifetime_years: "tco-lifetime-years",
    requests_per_day: "tco-requests-per-day",
    tokens_per_request: "tco-tokens-per-request",
    peak_factor: "tco-peak-factor",
    capex_usd: "tco-capex-usd",
    residual_fraction: "tco-residual-fraction",
    maintenance_usd_per_hour: "tco-maintenance-usd-per-hour",
    input_usd_per_1m: "tco-api-input-usd-per-1m",
    output_usd_per_1m: "tco-api-output-usd-per-1m",
    cached_input_usd_per_1m: "tco-api-cached-input-usd-per-1m",
    input_tokens: "tco-input-tokens-per-request",
    cached_fraction: "tco-cached-fraction"
  };

  function setNumber(id, value) {
    el(id).value = value === null || value === undefined ? "" : String(value);
  }

  // A required number: NaN when empty, so the formula's own check names it.
  function readNumber(id) {
    var text = el(id).value.trim();
    return text === "" ? NaN : Number(text);
  }

  // An optional number: null when empty.
  function readOptional(id) {
    var text = el(id).value.trim();
    return text === "" ? null : Number(text);
  }

  function currentCell() {
    var id = cellSelect.value;
    for (var i = 0; i < data.cells.length; i++) {
      if (data.cells[i].cell_id === id) {
        return data.cells[i];
      }
    }
    return data.cells[0];
  }

  function offerLabel(o) {
    return o.instance + " · " + o.tier + " · " + fmtShown(o.usd_per_hour) + " $/h" +
      (o.replicas > 1 ? " · " + o.replicas + " replicas" : "");
  }

  // Fills the instance/tier list of the chosen cell, keeping the chosen instance and tier when
  // the new cell has them too (else its first offer), or a custom price when `stayCustom`.
  function fillOffers(keep, stayCustom) {
    var cell = currentCell();
    while (offerSelect.firstChild) {
      offerSelect.removeChild(offerSelect.firstChild);
    }
    var chosen = CUSTOM;
    cell.offers.forEach(function (o, i) {
      var option = document.createElement("option");
      option.value = String(i);
      option.textContent = offerLabel(o);
      offerSelect.appendChild(option);
      if (keep && keep.instance === o.instance && keep.tier === o.tier) {
        chosen = String(i);
      }
    });
    var custom = document.createElement("option");
    custom.value = CUSTOM;
    custom.textContent = "custom price (type $/h below)";
    offerSelect.appendChild(custom);
    if (chosen === CUSTOM && !stayCustom && cell.offers.length > 0) {
      chosen = "0";
    }
    offerSelect.value = chosen;
  }

  function currentOffer() {
    var v = offerSelect.value;
    return v === CUSTOM ? null : currentCell().offers[Number(v)];
  }

  function applyOffer() {
    var o = currentOffer();
    if (o) {
      setNumber("tco-price", o.usd_per_hour);
      setNumber("tco-replicas", o.replicas);
    }
  }

  // Generated tokens per request unless the reader typed another: the scenario's workload, else
  // the cell's own `new_tokens` (as in the report's cost table).
  function defaultTokensPerRequest(cell) {
    var d = data.defaults;
    return d.tokens_per_request !== null ? d.tokens_per_request : cell.new_tokens;
  }

  // Input tokens per request unless the reader typed another: the scenario's API section, else
  // the cell's own `prompt_tokens`.
  function defaultInputTokens(cell) {
    var d = data.defaults;
    return d.input_tokens_per_request !== null ? d.input_tokens_per_request : cell.prompt_tokens;
  }

  var shownCell = null;
  function onCellChange() {
    var wasCustom = offerSelect.value === CUSTOM;
    fillOffers(wasCustom ? null : currentOfferKey, wasCustom);
    applyOffer();
    rememberOffer();
    var typed = readOptional("tco-tokens-per-request");
    if (typed === null || (shownCell !== null && typed === defaultTokensPerRequest(shownCell))) {
      setNumber("tco-tokens-per-request", defaultTokensPerRequest(currentCell()));
    }
    var typedInput = readOptional("tco-input-tokens-per-request");
    if (typedInput === null || (shownCell !== null && typedInput === defaultInputTokens(shownCell))) {
      setNumber("tco-input-tokens-per-request", defaultInputTokens(currentCell()));
    }
    shownCell = currentCell();
  }

  var currentOfferKey = null;
  function rememberOffer() {
    var o = currentOffer();
    currentOfferKey = o ? { instance: o.instance, tier: o.tier } : null;
  }

  // ------------------------------------------------------------------------------------------
  // Computing and showing
  // ------------------------------------------------------------------------------------------

  // Every output: key (as in `tcobench tco --json`) → its <output> element.
  var outputs = {};
  Array.prototype.forEach.call(document.querySelectorAll("#tco-results output[data-key]"), function (o) {
    outputs[o.getAttribute("data-key")] = o;
  });

  // Numbers as shown: 4 significant digits (full precision stays in data-value).
  function fmtShown(x) {
    if (Number.isInteger(x) && Math.abs(x) < 1e15) {
      return String(x);
    }
    var rounded = Number(x.toPrecision(4));
    return String(rounded);
  }

  // The inputs, parsed; the measured figures of the chosen cell scaled to the whole instance
  // (replicas × one replica's tokens/s and power), as in the report's cost table.
  function readInputs() {
    var cell = currentCell();
    var replicas = readNumber("tco-replicas");
    var embodiedKg = readOptional("tco-embodied-kg");
    var lifetimeYears = readOptional("tco-lifetime-years");
    return {
      cell: cell,
      replicas: replicas,
      tokensPerS: cell.tokens_per_s * replicas,
      watts: cell.j_per_token === null ? null : cell.j_per_token * cell.tokens_per_s * replicas,
      price: readNumber("tco-price"),
      utilization: readNumber("tco-utilization"),
      pue: readNumber("tco-pue"),
      idleWatts: readOptional("tco-idle-watts") === null ? null : readOptional("tco-idle-watts") * replicas,
      usdPerKwh: readOptional("tco-usd-per-kwh"),
      grid: readOptional("tco-grid"),
      embodiedKg: embodiedKg,
      lifetimeYears: lifetimeYears,
      requestsPerDay: readOptional("tco-requests-per-day"),
      tokensPerRequest: readNumber("tco-tokens-per-request"),
      peakFactor: readNumber("tco-peak-factor"),
      capexUsd: readOptional("tco-capex-usd"),
      onpremLifetimeYears: readNumber("tco-onprem-lifetime-years"),
      residualFraction: readOptional("tco-residual-fraction"),
      maintenanceUsdPerHour: readOptional("tco-maintenance-usd-per-hour"),
      apiInput: readOptional("tco-api-input-usd-per-1m"),
      apiOutput: readOptional("tco-api-output-usd-per-1m"),
      apiCached: readOptional("tco-api-cached-input-usd-per-1m"),
      inputTokens: readNumber("tco-input-tokens-per-request"),
      cachedFraction: readOptional("tco-cached-fraction")
    };
  }

  // The figures of `tcobench tco --json` for the inputs (null: not computable, with the reason
  // in `problems`), plus the electricity cost lines (kWh × $/kWh: the energy term of
  // formulas.rs `onprem_usd_per_hour`, W · PUE · $/kWh / 1000 per busy hour, applied to kWh).
  function calculate(x) {
    var v = {};
    var problems = [];
    var invalid = {};
    function attempt(fn) {
      try {
        return fn();
      } catch (e) {
        if (!(e instanceof FormulaError)) {
          throw e;
        }
        if (problems.indexOf(e.message) < 0) {
          problems.push(e.message);
        }
        invalid[e.input] = true;
        return null;
      }
    }
    var replicasOk = attempt(function () {
      positive("replicas", x.replicas);
      if (!Number.isInteger(x.replicas)) {
        fail("replicas", x.replicas, "must be a whole number");
      }
      return true;
    });
    v.tokens_per_s = replicasOk ? x.tokensPerS : null;
    v.watts = replicasOk ? x.watts : null;
    if (!replicasOk) {
      return { values: v, problems: problems, invalid: invalid };
    }
    v.usd_per_1m_tokens = attempt(function () {
      return usdPer1mTokens(x.price, x.tokensPerS, x.utilization);
    });
    v.tokens_per_usd = attempt(function () {
      return tokensPerUsd(x.price, x.tokensPerS, x.utilization);
    });
    v.kwh_per_1m_tokens = null;
    if (x.watts === null) {
      problems.push("energy was not measured in this cell: no kWh, carbon or electricity figures");
    } else {
      v.kwh_per_1m_tokens = attempt(function () {
        return kwhPer1mTokens(x.watts, x.pue, x.tokensPerS, x.utilization, x.idleWatts);
      });
    }
    var embodied = null;
    if (x.embodiedKg !== null && x.lifetimeYears === null) {
      attempt(function () {
        fail("lifetime_years", NaN, "needed with embodied_kg to spread the embodied emissions over");
      });
    } else if (x.embodiedKg !== null) {
      embodied = [x.embodiedKg, x.lifetimeYears];
    }
    var embodiedG = 0.0;
    if (embodied !== null) {
      embodiedG = attempt(function () {
        return embodiedGco2ePer1mTokens(embodied[0], embodied[1], x.tokensPerS, x.utilization);
      });
    }
    v.gco2e_per_1m_tokens = null;
    if (v.kwh_per_1m_tokens !== null && x.grid !== null && embodiedG !== null) {
      v.gco2e_per_1m_tokens = attempt(function () {
        return gco2ePer1mTokens(v.kwh_per_1m_tokens, x.grid, embodiedG);
      });
    }
    var kwhPrice = null;
    if (x.usdPerKwh !== null) {
      kwhPrice = attempt(function () {
        return nonNegative("usd_per_kwh", x.usdPerKwh);
      });
    }
    v.electricity_usd_per_1m_tokens =
      v.kwh_per_1m_tokens !== null && kwhPrice !== null ? v.kwh_per_1m_tokens * kwhPrice : null;

    var keys = ["instances", "utilization", "usd_per_month", "kwh_per_month", "kgco2e_per_month"];
    keys.forEach(function (k) {
      v[k] = null;
    });
    v.electricity_usd_per_month = null;
    if (x.requestsPerDay !== null) {
      var s = attempt(function () {
        return sizeWorkload({
          requests_per_day: x.requestsPerDay,
          tokens_per_request: x.tokensPerRequest,
          peak_factor: x.peakFactor,
          capacity_tokens_per_s: x.tokensPerS,
          price_usd_per_hour: x.price,
          watts: x.watts,
          idle_watts: x.idleWatts,
          pue: x.pue,
          grid_g_per_kwh: x.grid,
          embodied_kg_and_lifetime_years: embodied
        });
      });
      if (s !== null) {
        keys.forEach(function (k) {
          v[k] = s[k];
        });
        v.electricity_usd_per_month =
          s.kwh_per_month !== null && kwhPrice !== null ? s.kwh_per_month * kwhPrice : null;
      }
    }

    // As `tcobench tco`: a fleet of the sized instances, or one instance without a workload.
    var fleet = v.instances !== null ? v.instances : 1.0;
    var onpremKeys = ["usd_per_hour", "usd_per_1m_tokens", "usd_per_month", "break_even_months",
      "break_even_utilization"];
    onpremKeys.forEach(function (k) {
      v["onprem_" + k] = null;
    });
    if (x.capexUsd !== null) {
      if (x.watts === null) {
        problems.push("on-prem cost needs the power, and energy was not measured in this cell");
      } else if (kwhPrice === null) {
        problems.push("on-prem cost needs the electricity price ($/kWh)");
      } else {
        var o = attempt(function () {
          return compareOnprem({
            capex_usd: x.capexUsd,
            residual_fraction: x.residualFraction !== null ? x.residualFraction : 0.0,
            lifetime_years: x.onpremLifetimeYears,
            watts: x.watts,
            pue: x.pue,
            usd_per_kwh: kwhPrice,
            maintenance_usd_per_hour: x.maintenanceUsdPerHour !== null ? x.maintenanceUsdPerHour : 0.0
          }, x.tokensPerS, x.utilization, fleet, x.price);
        });
        if (o !== null) {
          onpremKeys.forEach(function (k) {
            v["onprem_" + k] = o[k];
          });
        }
      }
    }

    var apiKeys = ["usd_per_request", "usd_per_1m_output_tokens", "usd_per_month",
      "break_even_requests_per_day"];
    apiKeys.forEach(function (k) {
      v["api_" + k] = null;
    });
    if (x.apiInput !== null || x.apiOutput !== null) {
      if (x.apiInput === null || x.apiOutput === null) {
        problems.push("the API comparison needs both its input and its output price");
      } else {
        var a = attempt(function () {
          return compareApi({
            input_usd_per_1m: x.apiInput,
            output_usd_per_1m: x.apiOutput,
            cached_input_usd_per_1m: x.apiCached
          }, x.inputTokens, x.tokensPerRequest, x.cachedFraction !== null ? x.cachedFraction : 0.0,
          x.price, fleet, x.requestsPerDay);
        });
        if (a !== null) {
          apiKeys.forEach(function (k) {
            v["api_" + k] = a[k];
          });
        }
      }
    }
    return { values: v, problems: problems, invalid: invalid };
  }

  function show(result) {
    Object.keys(outputs).forEach(function (k) {
      var o = outputs[k];
      var x = result.values[k];
      var ok = typeof x === "number" && Number.isFinite(x);
      o.setAttribute("data-value", ok ? String(x) : "");
      o.textContent = ok ? fmtShown(x) : "—";
    });
    Object.keys(FIELD_OF_INPUT).forEach(function (name) {
      var field = el(FIELD_OF_INPUT[name]);
      if (result.invalid[name]) {
        field.setAttribute("aria-invalid", "true");
      } else {
        field.removeAttribute("aria-invalid");
      }
    });
    var list = el("tco-problems");
    while (list.firstChild) {
      list.removeChild(list.firstChild);
    }
    result.problems.forEach(function (p) {
      var item = document.createElement("li");
      item.textContent = p;
      list.appendChild(item);
    });
    el("tco-measured").textContent = measuredText(currentCell());
  }

  function measuredText(cell) {
    var text = "Measured in this cell (one replica, mean over timed repetitions): " +
      fmtShown(cell.tokens_per_s) + " tokens/s";
    if (cell.j_per_token !== null) {
      text += ", " + fmtShown(cell.j_per_token) + " J/token (" +
        fmtShown(cell.j_per_token * cell.tokens_per_s) + " W)";
    } else {
      text += "; energy not measured";
    }
    if (cell.slo_met === false) {
      text += ". This cell misses the scenario's latency SLO";
    }
    return text + ".";
  }

  function update() {
    show(calculate(readInputs()));
  }

  // ------------------------------------------------------------------------------------------
  // Start: prefill from the run, then follow every edit
  // ------------------------------------------------------------------------------------------

  if (data.cells.length === 0) {
    return;
  }
  data.cells.forEach(function (c) {
    var option = document.createElement("option");
    option.value = c.cell_id;
    option.textContent = c.label + " [" + c.cell_id.slice(-8) + "]";
    cellSelect.appendChild(option);
  });
  var d = data.defaults;
  cellSelect.value = d.cell_id !== null ? d.cell_id : data.cells[0].cell_id;
  fillOffers(d.instance !== null ? { instance: d.instance, tier: d.tier } : null, false);
  applyOffer();
  rememberOffer();
  if (currentOffer() === null) {
    setNumber("tco-replicas", 1);
  }
  setNumber("tco-utilization", d.utilization);
  setNumber("tco-pue", d.pue);
  setNumber("tco-idle-watts", d.idle_watts);
  setNumber("tco-usd-per-kwh", d.usd_per_kwh);
  setNumber("tco-grid", d.grid_g_per_kwh);
  setNumber("tco-embodied-kg", d.embodied_kg);
  setNumber("tco-lifetime-years", d.lifetime_years);
  setNumber("tco-requests-per-day", d.requests_per_day);
  setNumber("tco-tokens-per-request", defaultTokensPerRequest(currentCell()));
  setNumber("tco-peak-factor", d.peak_factor);
  setNumber("tco-capex-usd", d.capex_usd);
  setNumber("tco-onprem-lifetime-years", d.onprem_lifetime_years);
  setNumber("tco-residual-fraction", d.residual_fraction);
  setNumber("tco-maintenance-usd-per-hour", d.maintenance_usd_per_hour);
  setNumber("tco-api-input-usd-per-1m", d.api_input_usd_per_1m);
  setNumber("tco-api-output-usd-per-1m", d.api_output_usd_per_1m);
  setNumber("tco-api-cached-input-usd-per-1m", d.api_cached_input_usd_per_1m);
  setNumber("tco-cached-fraction", d.cached_fraction);
  setNumber("tco-input-tokens-per-request", defaultInputTokens(currentCell()));
  if (d.api_name !== null) {
    el("tco-api-name").textContent = ": " + d.api_name;
  }
  shownCell = currentCell();

  cellSelect.addEventListener("change", function () {
    onCellChange();
    update();
  });
  offerSelect.addEventListener("change", function () {
    applyOffer();
    rememberOffer();
    update();
  });
  // Typing a price that is not the chosen offer's makes it a custom price.
  el("tco-price").addEventListener("input", function () {
    var o = currentOffer();
    if (o && readNumber("tco-price") !== o.usd_per_hour) {
      offerSelect.value = CUSTOM;
      rememberOffer();
    }
  });
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  form.addEventListener("submit", function (e) {
    e.preventDefault();
  });
  form.hidden = false;
  el("tco-results").hidden = false;
  update();
})();
