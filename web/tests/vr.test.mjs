// The WebXR path in a real Chromium, with an emulated headset: IWER (Meta's Immersive Web
// Emulation Runtime, a devDependency) installs navigator.xr with a Quest 3 before the page
// loads. The page must offer "Enter VR", start an immersive session, render frames in it, and
// move to the next bed when the controller's trigger is pressed.
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
const artifacts = path.resolve(process.env.METAWARD_ARTIFACTS || "../test-artifacts");
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

test("Enter VR starts an immersive session that renders, and the trigger teleports to the next bed", async () => {
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

  // While presenting, the emulator covers the page as a headset would: press the button in the page.
  await page.$eval('[data-testid="enter-vr"]', (button) => button.click()); // now "Exit VR"
  await page.waitForFunction(() => window.__metaward.xrPresenting === false, null, { timeout: 10_000 });
  console.log(`xr frames ${await page.evaluate(() => window.__metaward.xrFrames())}`);
  assert.deepEqual(errors.filter((e) => !/favicon/.test(e)), [], "the page logged errors");
});
