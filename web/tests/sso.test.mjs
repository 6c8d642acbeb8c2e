// Single sign-on end to end: a real OpenID Connect provider (oidc-provider, tests/oidc-provider.mjs)
// over https with a certificate from a CA made here (openssl), and a metaward demo configured
// with [auth.oidc] trusting that CA (ca_file), both on loopback and both started here, and
// real Chromium (playwright-core; Debian's /usr/bin/chromium unless CHROMIUM_PATH says
// otherwise) clicking through "Sign in with SSO", the provider's login and consent, and back to
// the ward. An account the provider knows but no metaward user is linked to is refused with a
// clear message on the page and recorded in the audit trail as a failed login.
//
//   METAWARD_BIN        the metaward binary (default ../target/debug/metaward)
//   METAWARD_ARTIFACTS  where screenshots and the server's log go (default ../test-artifacts)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startProvider } from "./oidc-provider.mjs";

const here = path.dirname(new URL(import.meta.url).pathname);
const bin = path.resolve(process.env.METAWARD_BIN || path.join(here, "../../target/debug/metaward"));
const artifacts = path.resolve(process.env.METAWARD_ARTIFACTS || path.join(here, "../../test-artifacts"));
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

const LINKED_SUBJECT = "ann-sso-7f3a";
const LINKED_USER = "ann.sso";
const UNLINKED_SUBJECT = "stranger-42";
const GROUP_SUBJECT = "grp-carol";

let provider;
let demo;
let data;
let url;
let adminPassword;
let browser;

/** A test CA and a certificate it signs for 127.0.0.1 (openssl), in `dir`: PEM paths. */
function makeCertificates(dir) {
  const run = (...args) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  fs.writeFileSync(path.join(dir, "leaf.ext"),
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n");
  run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=metaward SSO test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign");
  run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-keyout", "idp.key", "-out", "idp.csr", "-subj", "/CN=127.0.0.1");
  run("x509", "-req", "-in", "idp.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-days", "1", "-out", "idp.pem", "-extfile", "leaf.ext");
  return { ca: path.join(dir, "ca.pem"), key: path.join(dir, "idp.key"), cert: path.join(dir, "idp.pem") };
}

/** A free loopback port: the callback URL must be known to the provider before metaward starts. */
async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

before(async () => {
  assert.ok(fs.existsSync(bin), `no metaward binary at ${bin} (cargo build -p metaward, or METAWARD_BIN)`);
  fs.mkdirSync(artifacts, { recursive: true });
  const port = await freePort();
  const redirectUri = `http://127.0.0.1:${port}/api/v1/auth/oidc/callback`;
  const clientSecret = crypto.randomBytes(24).toString("base64url");
  data = fs.mkdtempSync(path.join(os.tmpdir(), "metaward-sso-"));
  const pki = path.join(data, "pki");
  fs.mkdirSync(pki);
  const certificates = makeCertificates(pki);
  provider = await startProvider({
    clientId: "metaward", clientSecret, redirectUri,
    tls: { key: fs.readFileSync(certificates.key, "utf8"), cert: fs.readFileSync(certificates.cert, "utf8") },
  });
  assert.match(provider.issuer, /^https:/);

  const config = path.join(data, "metaward.toml");
  fs.writeFileSync(config, [
    "[auth.oidc]",
    `issuer = "${provider.issuer}"`,
    `ca_file = "${certificates.ca}"`,
    `client_id = "metaward"`,
    `client_secret = "${clientSecret}"`,
    `redirect_uri = "${redirectUri}"`,
    `display_name = "Test Hospital IdP"`,
    `scopes = ["openid", "profile", "groups"]`,
    `username_claim = "preferred_username"`,
    `groups_claim = "groups"`,
    // Shared ward workstations: the provider must authenticate again at each sign-in.
    `force_login = true`,
    "[[auth.oidc.groups]]",
    `group = "ward-a-physicians"`,
    `role = "physician"`,
    `wards = ["ward-a"]`,
    "",
  ].join("\n"), { mode: 0o600 });
  // An admin links a nurse of ward-a (the demo's ward) to the provider's subject.
  const created = execFileSync(bin, [
    "user", "create", LINKED_USER, "--role", "nurse", "--ward", "ward-a",
    "--oidc-subject", LINKED_SUBJECT, "--data", data,
  ], { encoding: "utf8" });
  assert.match(created, new RegExp(`linked ${LINKED_USER.replace(".", "\\.")} to the single sign-on subject ${LINKED_SUBJECT}`));

  const log = fs.openSync(path.join(artifacts, "sso-server.log"), "w");
  demo = spawn(bin, [
    "demo", "--http", `127.0.0.1:${port}`, "--mqtt", "127.0.0.1:0", "--mllp", "127.0.0.1:0",
    "--data", data, "--beds", "6", "--config", config,
  ], { stdio: ["ignore", "pipe", log] });
  let stdout = "";
  demo.stdout.on("data", (chunk) => { stdout += chunk; });
  const exited = new Promise((resolve) => demo.once("exit", resolve));
  const started = await Promise.race([
    (async () => {
      for (let i = 0; i < 300 && !/simulating/.test(stdout); i++) await new Promise((r) => setTimeout(r, 100));
      return /simulating/.test(stdout);
    })(),
    exited.then(() => false),
  ]);
  assert.ok(started, `the demo did not start: ${stdout}\n${fs.readFileSync(path.join(artifacts, "sso-server.log"), "utf8")}`);
  url = `http://127.0.0.1:${port}/`;
  adminPassword = stdout.split("\n").map((line) => line.trim().split(/\s+/)).find((words) => words[0] === "demo-admin")?.[2];
  assert.ok(adminPassword, `the demo printed no demo-admin password: ${stdout}`);

  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
    ],
  });
});

after(async () => {
  await browser?.close();
  if (demo && demo.exitCode === null) {
    const exited = new Promise((resolve) => demo.once("exit", resolve));
    demo.kill("SIGTERM");
    await exited;
  }
  await provider?.close();
  if (data) fs.rmSync(data, { recursive: true, force: true });
});

/** From the page's sign-in form through the provider's login and consent, as `account`. */
async function signInWithSso(page, account, shot) {
  await page.goto(url, { waitUntil: "load", timeout: 20_000 });
  await page.waitForSelector('[data-testid="login"]', { state: "visible", timeout: 20_000 });
  await page.waitForSelector('[data-testid="login-sso"]', { state: "visible", timeout: 10_000 });
  assert.match(await page.textContent("#login-sso-name"), /Test Hospital IdP/);
  if (shot) await page.screenshot({ path: path.join(artifacts, shot) });
  await page.click('[data-testid="login-sso"]');
  // The provider's own pages: its development login form (any account id, any password) ...
  await page.waitForURL((at) => at.origin === new URL(provider.issuer).origin, { timeout: 20_000 });
  await page.waitForSelector('input[name="login"]', { timeout: 20_000 });
  await page.fill('input[name="login"]', account);
  await page.fill('input[name="password"]', "anything");
  await page.click('button[type="submit"]');
  // ... and its consent screen for this client.
  await page.waitForSelector('input[name="prompt"][value="consent"]', { state: "attached", timeout: 20_000 });
  await page.click('button[type="submit"]');
  // Back on metaward's page.
  await page.waitForURL((at) => at.origin === new URL(url).origin, { timeout: 20_000 });
}

async function adminToken() {
  const answer = await fetch(new URL("/api/v1/auth/login", url), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: "demo-admin", password: adminPassword }),
  });
  assert.equal(answer.status, 200, await answer.clone().text());
  return (await answer.json()).access_token;
}

async function auditEvents() {
  const answer = await fetch(new URL("/api/v1/audit?_count=10000", url), { headers: { Authorization: `Bearer ${await adminToken()}` } });
  assert.equal(answer.status, 200);
  return (await answer.json()).entry.map((entry) => entry.resource);
}

test("a linked account signs in through the identity provider and sees its ward", async () => {
  // The browser is not what is tested against the provider's certificate (metaward is, through
  // its ca_file): it accepts the test CA's certificate.
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));

  await signInWithSso(page, LINKED_SUBJECT, "sso-login.png");
  await page.waitForSelector('[data-testid="login"]', { state: "hidden", timeout: 15_000 });
  assert.match(await page.textContent('[data-testid="user"]'), new RegExp(LINKED_USER.replace(".", "\\.")));
  // The one-time code left the address bar at once, and no token is in the URL.
  assert.equal(new URL(page.url()).hash, "");
  assert.doesNotMatch(page.url(), /sso_code|access_token/);

  await page.waitForFunction(() => window.__metaward?.ready === true, null, { timeout: 30_000 });
  const beds = await page.evaluate(() => window.__metaward.beds);
  assert.ok(beds > 0, "the ward showed no bed");
  assert.ok(await page.isVisible('[data-testid="overview"]'), "no overview after SSO sign-in");

  // The session is an ordinary metaward session of the linked nurse, scoped to ward-a.
  const me = await page.evaluate(async () => {
    const token = JSON.parse(sessionStorage.getItem("metaward.session")).access_token;
    const answer = await fetch("/api/v1/auth/me", { headers: { Authorization: `Bearer ${token}` } });
    return answer.json();
  });
  assert.deepEqual(me, { name: LINKED_USER, role: "nurse", wards: ["ward-a"] });
  await page.waitForTimeout(1_500);
  await page.screenshot({ path: path.join(artifacts, "sso-ward.png") });

  const events = await auditEvents();
  const login = events.find((event) => event.subtype?.[0]?.code === "login" && event.agent[0].who.display === LINKED_USER);
  assert.ok(login, "no audited login for the SSO user");
  assert.equal(login.outcomeDesc, "success");
  assert.match(login.entity[0].what.display, /oidc\/callback/);

  // A shared workstation: after signing out, the next "Sign in with SSO" meets the provider's
  // login form again (force_login), not the previous person's provider session.
  await page.click('[data-testid="logout"]');
  await page.waitForSelector('[data-testid="login"]', { state: "visible", timeout: 10_000 });
  await page.waitForSelector('[data-testid="login-sso"]', { state: "visible", timeout: 10_000 });
  await page.click('[data-testid="login-sso"]');
  await page.waitForURL((at) => at.origin === new URL(provider.issuer).origin, { timeout: 20_000 });
  await page.waitForSelector('input[name="login"]', { timeout: 20_000 });
  assert.deepEqual(errors, []);
  await context.close();
});

test("an account linked to no metaward user is refused with a clear message and audited", async () => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await signInWithSso(page, UNLINKED_SUBJECT);
  await page.waitForSelector('[data-testid="login"]', { state: "visible", timeout: 15_000 });
  await page.waitForFunction(() => /not linked to a metaward user/.test(document.getElementById("login-message").textContent), null, { timeout: 10_000 });
  assert.equal(await page.evaluate(() => sessionStorage.getItem("metaward.session")), null, "a session was kept");
  assert.equal(await page.evaluate(() => window.__metaward?.beds ?? 0), 0, "the ward showed");
  await page.screenshot({ path: path.join(artifacts, "sso-refused.png") });
  // The same refusal in Chinese.
  await page.click('[data-testid="language"]');
  await page.waitForFunction(() => document.getElementById("login-sso").textContent === "单点登录 (SSO)", null, { timeout: 5_000 });
  assert.match(await page.textContent('[data-testid="login-message"]'), /尚未关联 metaward 用户/);
  await page.screenshot({ path: path.join(artifacts, "sso-login-zh.png") });

  const events = await auditEvents();
  const refused = events.find((event) => event.subtype?.[0]?.code === "login_failed" && event.agent[0].who.display === `oidc:${UNLINKED_SUBJECT}`);
  assert.ok(refused, "no audited failed login for the unlinked identity");
  assert.equal(refused.outcomeDesc, "oidc_unlinked");
  assert.equal(refused.agent[0].network.address, "127.0.0.1");
  await context.close();
});

test("an account in a configured group gets a user with that group's role and wards", async () => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await signInWithSso(page, GROUP_SUBJECT);
  await page.waitForSelector('[data-testid="login"]', { state: "hidden", timeout: 15_000 });
  await page.waitForFunction(() => window.__metaward?.ready === true, null, { timeout: 30_000 });
  const me = await page.evaluate(async () => {
    const token = JSON.parse(sessionStorage.getItem("metaward.session")).access_token;
    const answer = await fetch("/api/v1/auth/me", { headers: { Authorization: `Bearer ${token}` } });
    return answer.json();
  });
  // Named by preferred_username, role and wards from the group rule.
  assert.deepEqual(me, { name: GROUP_SUBJECT, role: "physician", wards: ["ward-a"] });
  const events = await auditEvents();
  const created = events.find((event) => event.subtype?.[0]?.code === "change" && /created with role physician from the provider's group ward-a-physicians/.test(event.entity[0].what.display));
  assert.ok(created, "the user's creation from the group is not in the audit trail");
  await context.close();
});
