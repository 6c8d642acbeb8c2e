// Browser test of the ward page against a running metaward server (real Chromium through
// playwright-core; Debian's /usr/bin/chromium unless CHROMIUM_PATH says otherwise).
//
//   METAWARD_URL        page to load (default http://127.0.0.1:8080/)
//   METAWARD_ARTIFACTS  where screenshots go (default ../test-artifacts)
//   METAWARD_USER, METAWARD_PASSWORD  who signs in (scripts/test takes a demo user from the
//                       demo's output; there is no default password)
//   METAWARD_USER2, METAWARD_PASSWORD2  a second clinician, for the presence test
//   METAWARD_ADMIN, METAWARD_ADMIN_PASSWORD  an admin of every ward, who writes to the medical
//                       record (/fhir) while the page is open
//
// It fails, never skips, when the server cannot be reached. Frame time is printed, not asserted.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const url = process.env.METAWARD_URL || "http://127.0.0.1:8080/";
// By default beside the repository's root (test-artifacts/, where scripts/test and CI keep
// them), wherever the tests are started from.
const artifacts = path.resolve(process.env.METAWARD_ARTIFACTS || new URL("../../test-artifacts", import.meta.url).pathname);
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const user = process.env.METAWARD_USER;
const password = process.env.METAWARD_PASSWORD;
const user2 = process.env.METAWARD_USER2;
const password2 = process.env.METAWARD_PASSWORD2;
const admin = process.env.METAWARD_ADMIN;
const adminPassword = process.env.METAWARD_ADMIN_PASSWORD;

/** Signs in through the API: a bearer token. */
async function apiToken(name, secret) {
  const response = await fetch(new URL("/api/v1/auth/login", url), {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: name, password: secret }),
  });
  assert.equal(response.status, 200, `login ${name}: ${await response.clone().text()}`);
  return (await response.json()).access_token;
}

/** POSTs a FHIR resource to the record as `token`; fails on any answer but 201 (or 200: the
 * same resource posted again, on a server an earlier run wrote to). */
async function postFhir(token, resource) {
  const response = await fetch(new URL(`/fhir/${resource.resourceType}`, url), {
    method: "POST", headers: { "content-type": "application/fhir+json", Authorization: `Bearer ${token}` }, body: JSON.stringify(resource),
  });
  assert.ok([200, 201].includes(response.status), `POST ${resource.resourceType}: ${response.status} ${await response.clone().text()}`);
  return response.json();
}

/** The page's access token, as the page holds it after signing in. */
function pageToken(on) {
  return on.evaluate(() => JSON.parse(sessionStorage.getItem("metaward.session")).access_token);
}

/** GET as the page's signed-in user; fails on any answer but 200. */
async function getJson(route) {
  const response = await fetch(new URL(route, url), { headers: { Authorization: `Bearer ${await pageToken(page)}` } });
  assert.equal(response.status, 200, `GET ${route}: ${response.status} ${await response.clone().text()}`);
  return response.json();
}

/** Signs a fresh page in through the form. */
async function signInPage(on, name, secret) {
  await on.waitForSelector('[data-testid="login"]', { state: "visible", timeout: 20_000 });
  await on.fill('[data-testid="login-user"]', name);
  await on.fill('[data-testid="login-password"]', secret);
  await on.click('[data-testid="login-submit"]');
  await on.waitForSelector('[data-testid="login"]', { state: "hidden", timeout: 10_000 });
}

let browser;
let page;
const consoleErrors = [];

before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
    ],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
});

after(async () => {
  await browser?.close();
});

test("the ward page renders the snapshot and shows live values", async () => {
  // A server that is not reachable makes goto throw: the test fails.
  const response = await page.goto(url, { waitUntil: "load", timeout: 20_000 });
  assert.ok(response, `no response from ${url}`);
  assert.ok(response.ok(), `${url} answered ${response.status()}`);

  // Nothing before signing in: the form, and no ward.
  assert.ok(user && password, "METAWARD_USER and METAWARD_PASSWORD must name a user");
  await page.waitForSelector('[data-testid="login"]', { state: "visible", timeout: 20_000 });
  assert.equal(await page.evaluate(() => window.__metaward.beds), 0, "the ward showed before sign-in");
  assert.equal(await page.isVisible('[data-testid="overview"]'), false, "the overview showed before sign-in");
  await page.screenshot({ path: path.join(artifacts, "login.png") });
  await page.fill('[data-testid="login-user"]', user);
  await page.fill('[data-testid="login-password"]', "not-the-password");
  await page.click('[data-testid="login-submit"]');
  await page.waitForFunction(() => /wrong user name or password/.test(document.getElementById("login-message").textContent), null, { timeout: 10_000 });
  await page.fill('[data-testid="login-password"]', password);
  await page.click('[data-testid="login-submit"]');
  await page.waitForSelector('[data-testid="login"]', { state: "hidden", timeout: 10_000 });
  assert.match(await page.textContent('[data-testid="user"]'), new RegExp(user));
  assert.ok(await page.isVisible('[data-testid="overview"]'), "no overview after sign-in");

  await page.waitForFunction(() => window.__metaward?.ready === true, null, { timeout: 30_000 });
  const state = await page.evaluate(() => ({ beds: window.__metaward.beds, patients: window.__metaward.patients }));
  console.log(`beds ${state.beds} patients ${state.patients}`);
  assert.ok(state.beds > 0, "the snapshot rendered no bed");

  // Some value label must change its text within 20 s.
  await page.waitForSelector('[data-testid^="value-"]', { state: "attached", timeout: 20_000 });
  const before = await page.$$eval('[data-testid^="value-"]', (nodes) =>
    Object.fromEntries(nodes.map((n) => [n.dataset.testid, n.textContent])));
  const changed = await page.waitForFunction(
    (previous) => {
      for (const node of document.querySelectorAll('[data-testid^="value-"]')) {
        const id = node.dataset.testid;
        if (id in previous && node.textContent !== previous[id] && node.textContent !== "") return id;
      }
      return false;
    },
    before,
    { timeout: 20_000, polling: 250 },
  );
  console.log(`label changed: ${await changed.jsonValue()}`);
  const updates = await page.evaluate(() => window.__metaward.valueUpdates);
  assert.ok(updates > 0, "no value update was received");

  await page.screenshot({ path: path.join(artifacts, "ward.png") });

  // Frame time over 5 s, counted with requestAnimationFrame in the page.
  const frames = await page.evaluate(() => new Promise((resolve) => {
    const deltas = [];
    let last = performance.now();
    const end = last + 5000;
    function tick(now) {
      deltas.push(now - last);
      last = now;
      if (now < end) requestAnimationFrame(tick);
      else resolve(deltas);
    }
    requestAnimationFrame(tick);
  }));
  const sorted = [...frames].sort((a, b) => a - b);
  const mean = frames.reduce((sum, d) => sum + d, 0) / Math.max(1, frames.length);
  const p95 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))] ?? 0;
  console.log(`frames ${frames.length} over 5 s`);
  console.log(`frame_ms_mean ${mean.toFixed(2)}`);
  console.log(`frame_ms_p95 ${p95.toFixed(2)}`);

  // Visit one bed, as a click would, and take the close-up.
  const bedId = await page.evaluate(() => window.__metaward.firstOccupiedBed());
  if (bedId) {
    assert.ok(await page.evaluate((id) => window.__metaward.focusBed(id), bedId));
    await page.waitForTimeout(2500);
  }
  await page.screenshot({ path: path.join(artifacts, "ward-zoom.png") });

});

// The tests below run in order on the same page, after the first has loaded the ward.

test("every bed shows its NEWS2 number and band, and the overview lists every bed in sync", async () => {
  const beds = await page.evaluate(() => window.__metaward.beds);
  await page.waitForFunction((n) => document.querySelectorAll("#overview-rows tr").length === n, beds, { timeout: 10_000 });
  // Wait for the overview's one-second refresh to have written every patient's score.
  await page.waitForFunction(() => {
    const scores = window.__metaward.scores();
    return Object.keys(scores).length > 0 && Object.entries(scores).every(([patient, score]) => {
      const badge = document.querySelector(`#overview-rows tr[data-patient="${patient}"] .badge.news2`);
      return badge && badge.dataset.total === String(score.total);
    });
  }, null, { timeout: 10_000 });
  // Scores move on while the page is read: the check holds once the overview has caught up with
  // the latest ones (it refreshes on the next frame), within a few seconds.
  const checkNow = () => page.evaluate(() => {
    const scores = window.__metaward.scores();
    const problems = [];
    for (const [patient, score] of Object.entries(scores)) {
      const bed = document.querySelector(`[data-testid="news2-${patient}"]`);
      if (!bed) { problems.push(`${patient}: no bed badge`); continue; }
      // Not by colour alone: the number and the band's word are in the text.
      if (!bed.textContent.includes(String(score.total))) problems.push(`${patient}: bed badge ${bed.textContent} lacks ${score.total}`);
      if (bed.dataset.band !== score.band) problems.push(`${patient}: bed band ${bed.dataset.band} != ${score.band}`);
      const row = document.querySelector(`#overview-rows tr[data-patient="${patient}"] .badge.news2`);
      if (!row.textContent.includes(score.band === "low-medium" ? "low-medium" : score.band)) problems.push(`${patient}: row ${row.textContent} lacks band word`);
    }
    return { problems, n: Object.keys(scores).length };
  });
  let check = await checkNow();
  for (let i = 0; i < 20 && check.problems.length > 0; i++) {
    await page.waitForTimeout(250);
    check = await checkNow();
  }
  console.log(`scores shown for ${check.n} patients`);
  assert.deepEqual(check.problems, []);
  // The scores the page holds are the server's.
  const patient = await page.evaluate(() => document.querySelector("#overview-rows tr[data-patient]").dataset.patient);
  const twin = await getJson(`/api/v1/patients/${patient}/twin`);
  assert.ok(twin.news2, "the twin has no NEWS2");
  // Each active patient alarm is counted on its bed with its priority.
  const alarms = await getJson("/api/v1/alarms");
  const byPatient = new Map();
  for (const alarm of alarms) if (alarm.subject.kind === "patient") byPatient.set(alarm.subject.id, [...(byPatient.get(alarm.subject.id) ?? []), alarm]);
  assert.ok(byPatient.size > 0, "the demo raised no patient alarm to show");
  const [alarmPatient, list] = [...byPatient][0];
  await page.waitForFunction(
    ({ id, n }) => Number(document.querySelector(`[data-testid="bed-alarms-${id}"]`)?.dataset.count) >= 1 && n >= 1,
    { id: alarmPatient, n: list.length }, { timeout: 10_000 },
  );
  // Every row and every bed shows as many alarms as the page holds, within a refresh.
  await page.waitForFunction(() => {
    const counts = window.__metaward.alarmCounts();
    return [...document.querySelectorAll("#overview-rows tr[data-patient]")].every((tr) => {
      const want = counts[`patient/${tr.dataset.patient}`] ?? 0;
      const row = Number(tr.querySelector(".alarm-cell span")?.dataset.count ?? 0);
      const bed = Number(document.querySelector(`[data-testid="bed-alarms-${tr.dataset.patient}"]`)?.dataset.count ?? 0);
      return row === want && bed === want;
    });
  }, null, { timeout: 10_000, polling: 200 });
  // Clicking a row selects the bed and flies there.
  const rowBed = await page.evaluate(() => document.querySelectorAll("#overview-rows tr[data-patient]")[2].dataset.bed);
  await page.click(`[data-testid="overview-row-${rowBed}"]`);
  await page.waitForTimeout(1500);
  assert.equal(await page.evaluate(() => window.__metaward.selectedBed()), rowBed);
  await page.waitForSelector(`[data-testid="overview-row-${rowBed}"].selected`, { timeout: 3000 });
  await page.screenshot({ path: path.join(artifacts, "overview.png") });
});

test("the avatar's regions are coloured as the twin's regions say", async () => {
  const patient = await page.evaluate(() => document.querySelector("#overview-rows tr.selected").dataset.patient);
  let mismatches = [];
  // The twin moves on while we compare: retry a few times until one REST answer is matched.
  for (let attempt = 0; attempt < 6; attempt++) {
    const regions = await getJson(`/api/v1/patients/${patient}/regions`);
    const expected = Object.fromEntries(regions.map((r) => [r.region, r.state]));
    try {
      await page.waitForFunction(({ id, want }) => {
        const shown = window.__metaward.regionStates(id);
        return Object.entries(want).every(([region, state]) => !(region in shown) || shown[region] === state);
      }, { id: patient, want: expected }, { timeout: 4000 });
      mismatches = [];
      const shown = await page.evaluate((id) => window.__metaward.regionStates(id), patient);
      console.log(`regions ${patient}: ${Object.entries(shown).filter(([, s]) => s !== "normal").map(([r, s]) => `${r}=${s}`).join(" ")}`);
      assert.ok(Object.keys(expected).some((r) => r in shown), "no REST region is on the avatar");
      break;
    } catch {
      const shown = await page.evaluate((id) => window.__metaward.regionStates(id), patient);
      mismatches = Object.entries(expected).filter(([r, s]) => r in shown && shown[r] !== s);
    }
  }
  assert.deepEqual(mismatches, []);
});

test("the patient panel shows the NEWS2 breakdown and scale; a region opens its chart and strip", async () => {
  await page.waitForSelector('[data-testid="news2-breakdown"]', { timeout: 5000 });
  const rows = await page.$$eval('[data-testid="news2-breakdown"] tr', (trs) => trs.length);
  assert.equal(rows, 7, "NEWS2 has seven parameters");
  const scale = await page.textContent('[data-testid="news2-scale"]');
  assert.match(scale, /scale [12]: \S/i);
  assert.ok(await page.evaluate(() => window.__metaward.selectRegion("heart")));
  await page.waitForSelector('[data-testid="region-detail"] .trend svg.chart', { timeout: 10_000 });
  const points = await page.$$eval('[data-testid="region-detail"] svg.chart', (charts) => charts.map((c) => Number(c.dataset.points)));
  assert.ok(points.some((n) => n > 1), `no chart has stored points: ${points}`);
  await page.waitForFunction(() => /Hz/.test(document.getElementById("ecg-caption").textContent), null, { timeout: 10_000 });
  assert.match(await page.textContent("#ecg-caption"), /ECG/);
  await page.$eval("#panel", (p) => { p.scrollTop = p.scrollHeight; });
  await page.screenshot({ path: path.join(artifacts, "region-heart.png") });
  assert.ok(await page.evaluate(() => window.__metaward.selectRegion("finger_left")));
  await page.waitForFunction(() => /Pleth/.test(document.getElementById("ecg-caption").textContent) && /Hz/.test(document.getElementById("ecg-caption").textContent), null, { timeout: 10_000 });
});

test("the record written to /fhir reaches the open panel live: allergy, condition on the avatar, medication, flagged lab, and a region's related items", async () => {
  // The demo's own record is in the panel from the snapshot.
  await page.waitForSelector('[data-testid="panel-labs"] tr', { timeout: 5000 });
  assert.ok(admin && adminPassword, "METAWARD_ADMIN and METAWARD_ADMIN_PASSWORD must name an admin (the record needs one)");
  const bed = await page.evaluate(() => window.__metaward.selectedBed());
  assert.ok(bed, "no bed is open");
  const patient = await page.evaluate((b) => document.querySelector(`#overview-rows tr[data-bed="${b}"]`).dataset.patient, bed);
  const snapshotsBefore = await page.evaluate(() => window.__metaward.snapshots);
  await page.waitForSelector('[data-testid="panel-allergies"]', { timeout: 5000 });
  const token = await apiToken(admin, adminPassword);
  const subject = { reference: `Patient/${patient}` };
  const active = (system) => ({ coding: [{ system, code: "active" }] });
  // Nothing sits at the left foot yet: the condition below must be what lights it.
  assert.equal(await page.evaluate((id) => window.__metaward.regionStates(id).foot_left, patient), "normal");
  await postFhir(token, {
    resourceType: "AllergyIntolerance", patient: subject, criticality: "high", recordedDate: "2024-05-02",
    clinicalStatus: active("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"), category: ["medication"],
    code: { text: "Iodinated contrast media" },
    reaction: [{ manifestation: [{ text: "Bronchospasm" }] }],
  });
  // Cellulitis sited by the record at the left foot (SNOMED CT body structure).
  await postFhir(token, {
    resourceType: "Condition", subject, clinicalStatus: active("http://terminology.hl7.org/CodeSystem/condition-clinical"),
    code: { coding: [{ system: "http://snomed.info/sct", code: "128045006", display: "Cellulitis" }], text: "Cellulitis of left foot" },
    bodySite: [{ coding: [{ system: "http://snomed.info/sct", code: "22335008", display: "Structure of left foot" }] }],
  });
  const heartFailure = await postFhir(token, {
    resourceType: "Condition", subject, clinicalStatus: active("http://terminology.hl7.org/CodeSystem/condition-clinical"),
    code: { coding: [{ system: "http://snomed.info/sct", code: "88805009", display: "Chronic congestive heart failure" }] },
  });
  await postFhir(token, {
    resourceType: "MedicationRequest", subject, status: "active", intent: "order", authoredOn: "2026-11-24T08:00:00Z",
    medicationCodeableConcept: { coding: [{ system: "http://www.nlm.nih.gov/research/umls/rxnorm", code: "1719286", display: "Furosemide 10 MG/ML Injection" }] },
    dosageInstruction: [{ text: "40 mg IV once daily" }],
    reasonReference: [{ reference: `Condition/${heartFailure.id}` }],
  });
  await postFhir(token, {
    resourceType: "Observation", subject, status: "final", effectiveDateTime: new Date(Date.now() - 3_600_000).toISOString(),
    category: [{ coding: [{ system: "http://terminology.hl7.org/CodeSystem/observation-category", code: "laboratory" }] }],
    code: { coding: [{ system: "http://loinc.org", code: "33762-6", display: "NT-proBNP" }] },
    valueQuantity: { value: 2400, unit: "pg/mL", system: "http://unitsofmeasure.org", code: "pg/mL" },
    referenceRange: [{ high: { value: 125, unit: "pg/mL" } }],
  });
  // All of it shows without a reload or a reconnect: the stream's `patient` message.
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="panel-allergies"] .allergy[data-criticality="high"]')].some((li) => /Iodinated contrast media/.test(li.textContent)), null, { timeout: 10_000 });
  assert.match(await page.textContent('[data-testid="panel-allergies"]'), /Iodinated contrast media[\s\S]*Bronchospasm/);
  // High-risk allergies come first.
  assert.equal(await page.$eval('[data-testid="panel-allergies"] .allergy', (li) => li.dataset.criticality), "high");
  await page.waitForSelector('[data-testid="panel-conditions"] li[data-code="128045006"]', { timeout: 10_000 });
  await page.waitForFunction((id) => window.__metaward.regionStates(id).foot_left === "condition", patient, { timeout: 10_000 });
  await page.waitForFunction(() => /40 mg IV once daily/.test(document.querySelector('[data-testid="panel-medications"]')?.textContent ?? ""), null, { timeout: 10_000 });
  assert.match(await page.textContent('[data-testid="panel-medications"]'), /Furosemide 10 MG\/ML Injection\s*40 mg IV once daily[\s\S]*Chronic congestive heart failure/);
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="panel-labs"] tr[data-flag="H"]')].some((tr) => /2400 pg\/mL/.test(tr.textContent)), null, { timeout: 10_000 });
  const lab = await page.$$eval('[data-testid="panel-labs"] tr[data-flag="H"]', (trs) => trs.map((tr) => tr.textContent).find((text) => /2400 pg\/mL/.test(text)));
  assert.match(lab, /NT-proBNP[\s\S]*2400 pg\/mL[\s\S]*125/);
  assert.equal(await page.evaluate(() => window.__metaward.snapshots), snapshotsBefore, "the page reconnected instead of applying the change");
  await page.$eval("#panel", (p) => { p.scrollTop = 0; });
  await page.screenshot({ path: path.join(artifacts, "record-panel.png") });

  // The heart's detail: the condition, the medication given for it, and the heart's lab.
  assert.ok(await page.evaluate(() => window.__metaward.selectRegion("heart")));
  await page.waitForSelector('[data-testid="region-related"][data-region="heart"]', { timeout: 5000 });
  const related = await page.$eval('[data-testid="region-related"]', (n) => ({ ...n.dataset, text: n.textContent }));
  assert.ok(Number(related.conditions) >= 1 && Number(related.medications) >= 1 && Number(related.labs) >= 1, JSON.stringify(related));
  assert.match(related.text, /Chronic congestive heart failure[\s\S]*Furosemide[\s\S]*NT-proBNP/);
  assert.match(related.text, /Furosemide 10 MG\/ML Injection/);
  // The left foot's: the cellulitis, and neither the heart's drug nor its lab.
  assert.ok(await page.evaluate(() => window.__metaward.selectRegion("foot_left")));
  await page.waitForSelector('[data-testid="region-related"][data-region="foot_left"]', { timeout: 5000 });
  const foot = await page.$eval('[data-testid="region-related"]', (n) => ({ ...n.dataset, text: n.textContent }));
  assert.equal(foot.medications, "0");
  assert.equal(foot.labs, "0");
  assert.equal(foot.conditions, "1");
  assert.match(foot.text, /Cellulitis of left foot/);
  assert.ok(await page.evaluate(() => window.__metaward.selectRegion("heart")));
  await page.waitForSelector('[data-testid="region-related"][data-region="heart"]', { timeout: 5000 });
  await page.$eval("#panel", (p) => { p.scrollTop = p.scrollHeight; });
  await page.screenshot({ path: path.join(artifacts, "region-related.png") });
});

test("an alarm acknowledged from the panel is acknowledged on the server", async () => {
  const alarms = await getJson("/api/v1/alarms");
  const alarm = alarms.find((a) => a.subject.kind === "patient" && a.acknowledged_at == null);
  assert.ok(alarm, "no unacknowledged patient alarm to acknowledge");
  const bed = await page.evaluate((id) => document.querySelector(`#overview-rows tr[data-patient="${id}"]`).dataset.bed, alarm.subject.id);
  assert.ok(await page.evaluate((id) => window.__metaward.focusBed(id), bed));
  await page.waitForSelector(`[data-testid="ack-${alarm.id}"]`, { timeout: 5000 });
  // Acknowledged in the signed-in user's name, shown in the panel, never typed.
  assert.equal(await page.textContent('[data-testid="user-name"]'), user);
  await page.click(`[data-testid="ack-${alarm.id}"]`);
  await page.waitForFunction((id) => {
    const item = document.querySelector(`[data-testid="alarm-${id}"]`);
    return !item || item.classList.contains("acked");
  }, alarm.id, { timeout: 5000 });
  assert.equal(await page.$(`[data-testid="ack-${alarm.id}"]`), null, "the acknowledge button is still there");
  const after = await getJson(`/api/v1/alarms/${alarm.id}`);
  assert.equal(after.acknowledged_by, user);
  assert.ok(after.history.some((h) => h.state === "acknowledged" || /acknowledged|resolved/.test(h.transition ?? "")));
  await page.screenshot({ path: path.join(artifacts, "alarm-acknowledged.png") });
});

test("the acuity worklist orders by band then score, and next patient flies there", async () => {
  await page.click('[data-testid="overview-sort"]');
  await page.waitForTimeout(1200);
  // Read the order and the scores in one tick, so they belong together.
  const order = await page.evaluate(() => {
    const scores = window.__metaward.scores();
    const patientOf = Object.fromEntries([...document.querySelectorAll("#overview-rows tr")].map((tr) => [tr.dataset.bed, tr.dataset.patient]));
    const rank = { zero: 0, low: 1, "low-medium": 2, medium: 3, high: 4 };
    return window.__metaward.overviewOrder().map((bed) => {
      const s = scores[patientOf[bed]];
      return s ? [rank[s.band], s.total] : [-1, -1];
    });
  });
  assert.ok(order.length > 0);
  for (let i = 1; i < order.length; i++) {
    const [b0, t0] = order[i - 1];
    const [b1, t1] = order[i];
    assert.ok(b0 > b1 || (b0 === b1 && t0 >= t1), `row ${i} out of acuity order: ${order[i - 1]} before ${order[i]}`);
  }
  const shownFirst = await page.evaluate(() => document.querySelector("#overview-rows tr:not([hidden])").dataset.bed);
  assert.ok(shownFirst, "the acuity list shows no row");
  // Scores move every second, and so can the order: read the top and press "next" in one tick.
  const first = await page.evaluate(() => {
    const top = window.__metaward.overviewOrder()[0];
    document.querySelector('[data-testid="next-patient"]').click();
    return top;
  });
  await page.waitForTimeout(1500);
  assert.equal(await page.evaluate(() => window.__metaward.selectedBed()), first);
  await page.click('[data-testid="overview-sort"]');
});

test("a round visits every patient once in acuity order, and a note with ACVPU reaches the record and NEWS2", async () => {
  await page.click('[data-testid="overview-sort"]'); // acuity: a new round
  await page.waitForTimeout(1100);
  const patients = await page.evaluate(() => window.__metaward.patients);
  // The first "next" fixes the worklist; read it and the scores in the same tick.
  const start = await page.evaluate(() => {
    const bed = window.__metaward.nextPatient();
    return { bed, list: window.__metaward.roundWorklist(), scores: window.__metaward.scores(),
      patientOf: Object.fromEntries([...document.querySelectorAll("#overview-rows tr")].map((tr) => [tr.dataset.bed, tr.dataset.patient])) };
  });
  assert.equal(start.list.length, patients, "the worklist has every patient");
  assert.equal(start.bed, start.list[0]);
  const rank = { zero: 0, low: 1, "low-medium": 2, medium: 3, high: 4 };
  const keys = start.list.map((bed) => {
    const s = start.scores[start.patientOf[bed]];
    return s ? [rank[s.band], s.total] : [-1, -1];
  });
  for (let i = 1; i < keys.length; i++) {
    assert.ok(keys[i - 1][0] > keys[i][0] || (keys[i - 1][0] === keys[i][0] && keys[i - 1][1] >= keys[i][1]),
      `worklist ${i} out of acuity order: ${keys[i - 1]} before ${keys[i]}`);
  }
  const visited = [start.bed];
  for (let i = 1; i < start.list.length; i++) visited.push(await page.evaluate(() => window.__metaward.nextPatient()));
  assert.deepEqual(visited, start.list, "the round visits the worklist in order");
  assert.equal(new Set(visited).size, patients, "everyone is seen once");
  await page.waitForTimeout(1500);

  // At the last bed: record a note with ACVPU "C" (new confusion) and mark reviewed.
  const bed = visited.at(-1);
  const patient = start.patientOf[bed];
  await page.waitForSelector('[data-testid="round-form"]');
  await page.fill('[data-testid="round-text"]', "new confusion since morning; family informed");
  await page.selectOption('[data-testid="round-acvpu"]', "C");
  await page.click('[data-testid="round-save"]');
  await page.waitForFunction(() => /saved/.test(document.querySelector('[data-testid="round-status"]')?.textContent ?? ""), null, { timeout: 10_000 });
  const notes = await getJson(`/api/v1/rounds/notes?patient=${patient}`);
  assert.equal(notes[0].author, user);
  assert.equal(notes[0].acvpu, "C");
  assert.equal(notes[0].reviewed, true);
  // The note reached the medical record.
  assert.match(notes[0].record, /^ClinicalImpression\//);
  const impression = await getJson(`/fhir/${notes[0].record}`);
  assert.equal(impression.subject.reference, `Patient/${patient}`);
  assert.equal(impression.assessor.display, user);
  // New confusion scores 3 on NEWS2: the consciousness row of the panel shows it.
  await page.waitForFunction(() => {
    const row = [...document.querySelectorAll('[data-testid="news2-breakdown"] tr')].find((tr) => /Consciousness/.test(tr.textContent));
    return row && row.querySelector(".sub")?.textContent === "3";
  }, null, { timeout: 10_000 });
  await page.waitForFunction((name) => (document.querySelector('[data-testid="last-review"]')?.textContent ?? "").includes(name), user, { timeout: 5000 });
  await page.screenshot({ path: path.join(artifacts, "round-note.png") });

  // The summary: everyone seen, the note's author against the patient, open alarms counted.
  await page.click('[data-testid="round-summary-button"]');
  await page.waitForSelector('[data-testid="round-summary"]:not([hidden])');
  const counts = await page.$eval('[data-testid="summary-counts"]', (n) => ({ seen: Number(n.dataset.seen), total: Number(n.dataset.total) }));
  assert.deepEqual(counts, { seen: patients, total: patients });
  assert.ok((await page.textContent(`[data-testid="summary-${patient}"]`)).includes(`${user} · ACVPU C`));
  await page.screenshot({ path: path.join(artifacts, "round-summary.png") });
  await page.click('[data-testid="round-summary"] [data-close]');
  await page.click('[data-testid="overview-sort"]');
});

test("the rooms show their readings and turn amber or red out of range", async () => {
  const rooms = await page.$$eval('[data-testid^="room-r"], .room-panel', (panels) => panels.map((p) => ({ level: p.dataset.level, rows: p.querySelectorAll(".vrow").length, abnormal: p.querySelectorAll(".vrow.abnormal").length })));
  assert.ok(rooms.length > 0);
  assert.ok(rooms.some((r) => r.rows > 0), "no room shows a reading");
  for (const room of rooms) if (room.abnormal > 0) assert.ok(room.level === "amber" || room.level === "red", `a room out of range is ${room.level}`);
});

test("two clinicians see each other's presence at the bed each is visiting, and notes appear live", async () => {
  // A second clinician signs in on their own; each is shown under their signed-in name.
  assert.ok(user2 && password2, "METAWARD_USER2 and METAWARD_PASSWORD2 must name a second user");
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const second = await context.newPage();
  await second.goto(url, { waitUntil: "load" });
  await signInPage(second, user2, password2);
  await second.waitForFunction(() => window.__metaward?.ready === true, null, { timeout: 30_000 });
  const bed = await second.evaluate(() => {
    const id = window.__metaward.firstOccupiedBed();
    window.__metaward.focusBed(id);
    return id;
  });
  // The first page sees the second clinician at that bed, in the list and in the 3D ward.
  await page.waitForFunction(({ b, name }) => window.__metaward.presence().some((p) => p.name === name && p.bed_id === b), { b: bed, name: user2 }, { timeout: 10_000 });
  await page.waitForFunction(({ b, name }) => (document.querySelector(`[data-testid="presence-at-${b}"]`)?.textContent ?? "").includes(name), { b: bed, name: user2 }, { timeout: 5000 });
  // And the second page sees the first clinician.
  await second.waitForFunction((name) => window.__metaward.presence().some((p) => p.name === name), user, { timeout: 10_000 });
  await page.screenshot({ path: path.join(artifacts, "presence.png") });
  // A note written at one screen appears at once on the other's, at the same patient.
  await page.evaluate((b) => window.__metaward.focusBed(b), bed);
  const text = `chest clear, seen together ${Date.now()}`;
  await page.fill('[data-testid="round-text"]', text);
  await page.click('[data-testid="round-save"]');
  await second.waitForFunction((t) => (document.querySelector('[data-testid="round-notes"]')?.textContent ?? "").includes(t), text, { timeout: 10_000 });
  assert.ok((await second.textContent('[data-testid="round-notes"]')).includes(user), "under its author's name");
  await second.screenshot({ path: path.join(artifacts, "note-live.png") });
  await context.close();
  await page.waitForFunction((name) => !window.__metaward.presence().some((p) => p.name === name), user2, { timeout: 10_000 });
});

test("the ward works from the keyboard alone", async () => {
  await page.keyboard.press("Escape");
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => window.__metaward.selectedBed() === null);
  // Tab reaches the overview's rows; Enter visits the bed.
  const bed = await page.evaluate(() => window.__metaward.overviewOrder().find((b) => document.querySelector(`[data-testid="overview-row-${b}"]`)?.dataset.patient));
  await page.focus(`[data-testid="overview-row-${bed}"]`);
  await page.keyboard.press("Enter");
  await page.waitForFunction((b) => window.__metaward.selectedBed() === b, bed);
  // A region chip is a button: Enter opens the region's detail; Escape goes back, then closes.
  await page.focus('[data-testid^="region-chip-"]');
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => window.__metaward.selectedRegion() !== null);
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => window.__metaward.selectedRegion() === null && window.__metaward.selectedBed() !== null);
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => window.__metaward.selectedBed() === null);
  // N: the next patient of the worklist; the arrow keys move the view.
  await page.keyboard.press("n");
  await page.waitForFunction(() => window.__metaward.selectedBed() !== null);
  await page.waitForTimeout(1000); // the flight to the bed ends
  const before = await page.evaluate(() => window.__metaward.cameraTarget());
  for (let i = 0; i < 5; i++) await page.keyboard.press("ArrowLeft");
  const after = await page.evaluate(() => window.__metaward.cameraTarget());
  assert.notDeepEqual(after, before, "the arrow keys pan the view");
});

test("on a touch screen a tap visits a bed and opens a region", async () => {
  // A tablet in landscape: the overview, the ward and the panel side by side.
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, hasTouch: true, isMobile: true });
  const phone = await context.newPage();
  await phone.goto(url, { waitUntil: "load" });
  await signInPage(phone, user, password);
  await phone.waitForFunction(() => window.__metaward?.ready === true, null, { timeout: 30_000 });
  // Where something is once the view has stopped moving.
  const settled = async (bed, region) => {
    let last = null;
    for (let i = 0; i < 40; i++) {
      const point = await phone.evaluate(({ b, r }) => {
        const at = window.__metaward.screenPoint(b, r);
        // Only where the ward itself is under the finger (not the overview or the panel).
        return at && document.elementFromPoint(at.x, at.y)?.closest("#viewport") ? at : null;
      }, { b: bed, r: region });
      if (point && last && Math.hypot(point.x - last.x, point.y - last.y) < 0.5) return point;
      last = point;
      await phone.waitForTimeout(100);
    }
    return null;
  };
  // A bed in view, tapped: the viewer goes there.
  await phone.waitForFunction(() => document.querySelectorAll('[data-testid^="overview-row-"][data-patient]').length > 0);
  await phone.waitForTimeout(500);
  const beds = await phone.evaluate(() => window.__metaward.overviewOrder());
  let bed = null;
  let atBed = null;
  for (const candidate of beds) {
    atBed = await phone.evaluate((b) => {
      const at = window.__metaward.screenPoint(b);
      return at && document.elementFromPoint(at.x, at.y)?.closest("#viewport") ? at : null;
    }, candidate);
    if (atBed && (await phone.evaluate((b) => !!document.querySelector(`[data-testid="overview-row-${b}"]`)?.dataset.patient, candidate))) {
      bed = candidate;
      break;
    }
  }
  assert.ok(bed, "no occupied bed is in view");
  await phone.touchscreen.tap(atBed.x, atBed.y);
  await phone.waitForFunction((b) => window.__metaward.selectedBed() === b, bed, { timeout: 5000 });
  // The visited bed comes to rest beside the panel, not under it, and so does the head.
  assert.ok(await settled(bed, undefined), "the visited bed is under the panel");
  assert.ok(await settled(bed, "head"), "the patient's head is under the panel");
  // At the bed, a tap on a part of the patient in view (not under the panel) opens that region.
  let region = null;
  let at = null;
  for (const candidate of ["head", "chest", "abdomen", "pelvis", "thigh_left", "thigh_right", "leg_left", "leg_right"]) {
    at = await settled(bed, candidate);
    if (at) {
      region = candidate;
      break;
    }
  }
  assert.ok(region, "no part of the patient is in view at the bed");
  await phone.touchscreen.tap(at.x, at.y);
  await phone.waitForFunction((r) => window.__metaward.selectedRegion() === r, region, { timeout: 5000 });
  await phone.screenshot({ path: path.join(artifacts, "touch.png") });
  await context.close();
});

test("the language switches to Simplified Chinese and back", async () => {
  // At a patient with an active alarm: its row, the NEWS2 breakdown, the scale and the response
  // are worded by the page from the server's structured fields.
  const alarms = await getJson("/api/v1/alarms");
  const alarm = alarms.find((a) => a.subject.kind === "patient");
  assert.ok(alarm, "no patient alarm to read in Chinese");
  const bed = await page.evaluate((id) => document.querySelector(`#overview-rows tr[data-patient="${id}"]`).dataset.bed, alarm.subject.id);
  assert.ok(await page.evaluate((id) => window.__metaward.focusBed(id), bed));
  await page.waitForSelector(`[data-testid="alarm-${alarm.id}"]`, { timeout: 5000 });
  await page.click('[data-testid="language"]');
  await page.waitForFunction(() => document.documentElement.lang === "zh-CN", null, { timeout: 3000 });
  assert.equal(await page.textContent(".overview-head h2"), "病区总览");
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid^="news2-"] .badge-detail')].some((n) => /危|零分/.test(n.textContent)), null, { timeout: 3000 });
  await page.waitForFunction(() => /危|零分/.test(document.querySelector("#overview-rows .badge.news2")?.textContent ?? ""), null, { timeout: 3000 });
  const han = /[\u4e00-\u9fff]/;
  await page.waitForFunction((id) => /[\u4e00-\u9fff]/.test(document.querySelector(`[data-testid="alarm-${id}"] .alarm-text`)?.textContent ?? ""), alarm.id, { timeout: 5000 });
  const alarmRow = await page.textContent(`[data-testid="alarm-${alarm.id}"] .alarm-text`);
  console.log(`alarm in Chinese: ${alarmRow} (server: ${alarm.message})`);
  assert.doesNotMatch(alarmRow, /at or (below|above)|clinical risk|device stopped/, "the alarm is still the server's English");
  const breakdown = await page.$$eval('[data-testid="news2-breakdown"] tr', (trs) => trs.map((tr) => tr.textContent));
  assert.ok(breakdown.length === 7 && breakdown.every((row) => /[\u4e00-\u9fff]/.test(row)), `breakdown rows: ${breakdown}`);
  assert.ok(breakdown.some((row) => /呼吸频率/.test(row)) && breakdown.some((row) => /体温/.test(row)), `breakdown rows: ${breakdown}`);
  const scale = await page.textContent('[data-testid="news2-scale"]');
  assert.match(scale, han);
  assert.doesNotMatch(scale, /prescribed|diagnosis|target/, `scale reason in English: ${scale}`);
  assert.match(await page.textContent('[data-testid="news2-response"]'), han);
  await page.screenshot({ path: path.join(artifacts, "zh.png") });
  await page.click('[data-testid="language"]');
  await page.waitForFunction(() => document.documentElement.lang === "en", null, { timeout: 3000 });
  assert.equal(await page.textContent(".overview-head h2"), "Ward overview");
  // The wrong password's 401 is the one expected console error.
  assert.deepEqual(consoleErrors.filter((e) => !/favicon|401 \(Unauthorized\)/.test(e)), [], "the page logged errors");
});
