// The WebXR path in a real Chromium, with an emulated headset: IWER (Meta's Immersive Web
// Emulation Runtime, a devDependency) installs navigator.xr with a Quest 3 before the page
// loads. The page must offer "Enter VR", start an immersive session, render frames in it, move
// to the next bed when the controller's trigger is pressed pointing at nothing, open a body
// region's detail when it points at the region (the controller's ray, as a hand would aim),
// and show its text in the world: the panel and the region labels, drawn to textures.
//
//   METAWARD_URL, METAWARD_ARTIFACTS, CHROMIUM_PATH, METAWARD_USER, METAWARD_PASSWORD as in
//   ward.test.mjs (the page shows nothing before signing in)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const url = process.env.METAWARD_URL || "http://127.0.0.1:8080/";
// By default beside the repository's root (test-artifacts/, where scripts/test and CI keep
// them), wherever the tests are started from.
const artifacts = path.resolve(process.env.METAWARD_ARTIFACTS || new URL("../../test-artifacts", import.meta.url).pathname);
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const user = process.env.METAWARD_USER;
const password = process.env.METAWARD_PASSWORD;
const iwer = fs.readFileSync(require.resolve("iwer/build/iwer.min.js"), "utf8");

let browser;
let page;
const errors = [];

before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  browser = await chromium.launch({
    executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  await page.addInitScript(`${iwer}
    window.__xrDevice = new IWER.XRDevice(IWER.metaQuest3);
    window.__xrDevice.installRuntime({ forceInstall: true });`);
});

after(async () => {
  await browser?.close();
});

test("Enter VR starts an immersive session that renders; the trigger teleports to the next bed, opens a body region it points at, and the text is in the world", async () => {
  await page.goto(url, { waitUntil: "load", timeout: 20_000 });
  assert.ok(user && password, "METAWARD_USER and METAWARD_PASSWORD must name a user");
  await page.waitForSelector('[data-testid="login"]', { state: "visible", timeout: 20_000 });
  await page.fill('[data-testid="login-user"]', user);
  await page.fill('[data-testid="login-password"]', password);
  await page.click('[data-testid="login-submit"]');
  await page.waitForSelector('[data-testid="login"]', { state: "hidden", timeout: 10_000 });
  await page.waitForFunction(() => window.__metaward?.ready === true, null, { timeout: 30_000 });
  await page.waitForFunction(() => window.__metaward.xrSupported === true, null, { timeout: 5000 });
  assert.ok(await page.isVisible('[data-testid="enter-vr"]'), "no Enter VR button");
  await page.click('[data-testid="enter-vr"]');
  await page.waitForFunction(() => window.__metaward.xrPresenting === true, null, { timeout: 10_000 });
  // Entering stands the viewer at the first bed of the round.
  await page.waitForFunction(() => window.__metaward.xrFrames() > 30, null, { timeout: 20_000 });
  const first = await page.evaluate(() => ({ bed: window.__metaward.selectedBed(), teleports: window.__metaward.xrTeleports() }));
  assert.equal(first.teleports, 1);
  assert.ok(first.bed);
  await page.screenshot({ path: path.join(artifacts, "vr.png") });

  // The emulated right controller's trigger: press and release is one `select`.
  await page.evaluate(() => window.__xrDevice.controllers.right.updateButtonValue("trigger", 1));
  await page.waitForTimeout(300);
  await page.evaluate(() => window.__xrDevice.controllers.right.updateButtonValue("trigger", 0));
  await page.waitForFunction(() => window.__metaward.xrTeleports() === 2, null, { timeout: 10_000 });
  const second = await page.evaluate(() => window.__metaward.selectedBed());
  assert.notEqual(second, first.bed, "the trigger did not move to another bed");
  assert.equal(second, await page.evaluate(() => window.__metaward.roundWorklist()[1]));

  // Aim the right controller at the heart of the patient at this bed, and pull the trigger.
  const pose = await page.evaluate(() => window.__metaward.xrAim("heart"));
  assert.ok(pose, "no heart to aim at");
  await page.evaluate(({ position, quaternion }) => {
    const right = window.__xrDevice.controllers.right;
    right.position.set(...position);
    right.quaternion.set(...quaternion);
  }, pose);
  await page.waitForTimeout(300);
  const selectsBefore = await page.evaluate(() => window.__metaward.xrSelects());
  await page.evaluate(() => window.__xrDevice.controllers.right.updateButtonValue("trigger", 1));
  await page.waitForTimeout(300);
  await page.evaluate(() => window.__xrDevice.controllers.right.updateButtonValue("trigger", 0));
  await page.waitForFunction((n) => window.__metaward.xrSelects() > n, selectsBefore, { timeout: 5000 });
  // The same as a click on the heart: its detail opens, and no teleport happened.
  await page.waitForFunction(() => window.__metaward.selectedRegion() === "heart", null, { timeout: 5000 });
  assert.equal(await page.evaluate(() => window.__metaward.xrTeleports()), 2, "pointing at the heart moved the viewer");
  assert.equal(await page.evaluate(() => window.__metaward.selectedBed()), second);
  assert.equal(await page.$eval('[data-testid="region-detail"]', (n) => n.hidden), false, "the region detail is not open");
  // In the world: the panel now shows the heart's detail, and the body's labels carry values.
  await page.waitForFunction(() => /heart/i.test(window.__metaward.xrPanel()[0] ?? ""), null, { timeout: 5000 });
  const panel = await page.evaluate(() => window.__metaward.xrPanel());
  console.log(`vr panel: ${panel.join(" | ")}`);
  assert.ok(panel.length > 1, "the region panel has no line");
  assert.ok(panel.slice(1).some((line) => /\d/.test(line) || /●|℞/.test(line)), `the heart's panel shows no value or record item: ${panel}`);
  await page.waitForFunction(() => Object.keys(window.__metaward.xrLabels()).length > 0, null, { timeout: 5000 });
  const labels = await page.evaluate(() => window.__metaward.xrLabels());
  console.log(`vr labels: ${JSON.stringify(labels)}`);
  const rows = Object.values(labels).flat();
  assert.ok(rows.some((row) => /\d/.test(row)), `no in-world label shows a value: ${JSON.stringify(labels)}`);
  await page.screenshot({ path: path.join(artifacts, "vr-region.png") });
  // The trigger on the panel closes the region's detail: the panel shows the patient again.
  const atPanel = await page.evaluate(() => window.__metaward.xrAim("panel"));
  await page.evaluate(({ position, quaternion }) => {
    const right = window.__xrDevice.controllers.right;
    right.position.set(...position);
    right.quaternion.set(...quaternion);
  }, atPanel);
  await page.waitForTimeout(300);
  await page.evaluate(() => window.__xrDevice.controllers.right.updateButtonValue("trigger", 1));
  await page.waitForTimeout(300);
  await page.evaluate(() => window.__xrDevice.controllers.right.updateButtonValue("trigger", 0));
  await page.waitForFunction(() => window.__metaward.selectedRegion() === null, null, { timeout: 5000 });
  await page.waitForFunction(() => /NEWS2/.test(window.__metaward.xrPanel().join(" ")), null, { timeout: 5000 });
  assert.equal(await page.evaluate(() => window.__metaward.xrTeleports()), 2, "pointing at the panel moved the viewer");

  // While presenting, the emulator covers the page as a headset would: press the button in the page.
  await page.$eval('[data-testid="enter-vr"]', (button) => button.click()); // now "Exit VR"
  await page.waitForFunction(() => window.__metaward.xrPresenting === false, null, { timeout: 10_000 });
  console.log(`xr frames ${await page.evaluate(() => window.__metaward.xrFrames())}`);
  assert.deepEqual(errors.filter((e) => !/favicon/.test(e)), [], "the page logged errors");
});
