// Drives tcobench's report.html in headless Chromium (Debian's `chromium`, through
// playwright-core; no browser is downloaded) and checks what a reader's browser would do:
//
// * the page loads from a file:// URL with no console error, no uncaught exception and no request
//   other than the report file itself (every other request is aborted and fails the check);
// * no script from the run's data runs: no dialog opens, `window.__pwned` stays undefined, and the
//   page holds exactly its two script elements (the calculator's JSON data and its code);
// * strings from the run appear as text (`expect_text`);
// * the TCO calculator's outputs (`data-value`, full precision) match the expected figures for
//   each case of inputs, to 1e-9 relative, and its problem list holds the expected messages;
// * screenshots (the full page, the calculator section) are written where the spec says.
//
// Usage: node tests/browser/check-report.mjs SPEC.json
//
// SPEC.json (written by the Rust integration test harness/tests/it/report_cli.rs):
//   { "chromium": "/usr/bin/chromium",
//     "pages": [ { "name": "...", "report": "/abs/report.html", "screenshot": "/abs/page.png",
//                  "calculator_screenshot": "/abs/calculator.png",
//                  "expect_text": ["..."], "option_text": ["..."],
//                  "cases": [ { "name": "...", "set": [["tco-cell", "ID"], ["tco-price", "0.5"]],
//                               "expect": { "usd_per_1m_tokens": 1.2, "instances": null },
//                               "all_keys": true, "problems": ["utilization = 1.5: ..."] } ] } ] }
//
// Prints one line per check and closes with `N passed, N failed`; exits 1 when any failed.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const REL_TOL = 1e-9;
const LAUNCH_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let passed = 0;
let failed = 0;

function check(ok, what, detail) {
  if (ok) {
    passed += 1;
    console.log(`ok   ${what}`);
  } else {
    failed += 1;
    console.log(`FAIL ${what}${detail === undefined ? "" : `: ${detail}`}`);
  }
}

function close(got, want) {
  if (want === 0) {
    return Math.abs(got) <= REL_TOL;
  }
  return Math.abs(got - want) <= REL_TOL * Math.abs(want);
}

async function setInput(page, id, value) {
  const tag = await page.$eval(`#${id}`, (e) => e.tagName);
  if (tag === "SELECT") {
    await page.selectOption(`#${id}`, String(value));
  } else {
    await page.fill(`#${id}`, String(value));
  }
}

async function runCase(page, pageName, c) {
  for (const [id, value] of c.set) {
    await setInput(page, id, value);
  }
  const shown = await page.$$eval("#tco-results output[data-key]", (els) =>
    els.map((e) => [e.getAttribute("data-key"), e.getAttribute("data-value"), e.textContent]),
  );
  const values = new Map(shown.map(([k, v]) => [k, v]));
  const label = `${pageName} / ${c.name}`;
  for (const [key, want] of Object.entries(c.expect)) {
    if (!values.has(key)) {
      check(false, `${label}: output ${key}`, "no such output on the page");
      continue;
    }
    const raw = values.get(key);
    if (want === null) {
      check(raw === "", `${label}: ${key} is not computed`, `data-value="${raw}"`);
      continue;
    }
    const got = raw === "" ? NaN : Number(raw);
    check(close(got, want), `${label}: ${key} = ${want}`, `page has ${raw}`);
  }
  if (c.all_keys) {
    const unchecked = [...values.keys()].filter((k) => !(k in c.expect));
    check(unchecked.length === 0, `${label}: every output checked`, unchecked.join(", "));
  }
  const problems = await page.$$eval("#tco-problems li", (els) => els.map((e) => e.textContent));
  for (const p of c.problems ?? []) {
    check(problems.includes(p), `${label}: problem listed: ${p}`, JSON.stringify(problems));
  }
  if (!c.problems) {
    const formulaProblems = problems.filter((p) => / = .*: /.test(p));
    check(formulaProblems.length === 0, `${label}: no invalid input`, JSON.stringify(problems));
  }
}

async function checkPage(context, spec) {
  const url = pathToFileURL(spec.report).href;
  const page = await context.newPage();
  const consoleErrors = [];
  const requests = [];
  const dialogs = [];
  page.on("console", (m) => {
    if (m.type() === "error") {
      consoleErrors.push(m.text());
    }
  });
  page.on("pageerror", (e) => consoleErrors.push(`uncaught: ${e.message}`));
  page.on("dialog", async (d) => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    await d.dismiss();
  });
  page.on("request", (r) => requests.push(r.url()));
  await page.route("**/*", (route) => {
    if (route.request().url() === url) {
      return route.continue();
    }
    return route.abort("blockedbyclient");
  });

  await page.goto(url, { waitUntil: "load" });
  const name = spec.name;

  const scripts = await page.evaluate(() =>
    Array.from(document.scripts).map((s) => s.type + "#" + s.id),
  );
  check(
    scripts.length === 2 && scripts[0] === "application/json#tco-data" && scripts[1] === "#",
    `${name}: only the calculator's two script elements`,
    JSON.stringify(scripts),
  );
  const calculatorShown = await page.$eval("#tco-form", (f) => !f.hidden).catch(() => false);
  check(calculatorShown, `${name}: the calculator started`);

  const text = await page.evaluate(() => document.body.innerText);
  for (const t of spec.expect_text ?? []) {
    check(text.includes(t), `${name}: shows as text: ${t}`);
  }
  const options = await page.$$eval("#tco-cell option", (els) => els.map((e) => e.textContent));
  for (const t of spec.option_text ?? []) {
    check(options.some((o) => o.includes(t)), `${name}: cell list shows as text: ${t}`, JSON.stringify(options));
  }

  for (const c of spec.cases ?? []) {
    await runCase(page, name, c);
  }

  if (spec.screenshot) {
    await page.screenshot({ path: spec.screenshot, fullPage: true });
    console.log(`screenshot ${spec.screenshot}`);
  }
  if (spec.calculator_screenshot) {
    await page.locator("#tco").screenshot({ path: spec.calculator_screenshot });
    console.log(`screenshot ${spec.calculator_screenshot}`);
  }

  const pwned = await page.evaluate(() => typeof window.__pwned);
  check(pwned === "undefined", `${name}: window.__pwned stays undefined`, pwned);
  check(dialogs.length === 0, `${name}: no dialog opened`, JSON.stringify(dialogs));
  check(consoleErrors.length === 0, `${name}: no console error`, JSON.stringify(consoleErrors));
  const foreign = requests.filter((u) => u !== url);
  check(foreign.length === 0, `${name}: no request but the report itself`, JSON.stringify(foreign));
  check(requests.includes(url), `${name}: the report itself was requested`, JSON.stringify(requests));
  await page.close();
}

async function main() {
  const specPath = process.argv[2];
  if (!specPath) {
    console.error("usage: node check-report.mjs SPEC.json");
    process.exit(2);
  }
  const spec = JSON.parse(readFileSync(specPath, "utf8"));
  const profile = mkdtempSync(join(tmpdir(), "tcobench-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: spec.chromium ?? "/usr/bin/chromium",
    headless: true,
    args: LAUNCH_ARGS,
    viewport: { width: 1280, height: 900 },
    offline: true,
  });
  try {
    for (const page of spec.pages) {
      await checkPage(context, page);
    }
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
