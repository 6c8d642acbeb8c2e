//! Signing in: a minimal form, the session kept in sessionStorage (gone when the tab closes),
//! the access token sent as `Authorization: Bearer` on fetch and as `?access_token=` on the
//! WebSocket (browsers cannot set headers there). The access token is renewed with the refresh
//! token a minute before it expires; when that fails, the form comes back.
//!
//! Single sign-on (when the server has `[auth.oidc]`): the form also offers "Sign in with SSO",
//! which goes to the identity provider through `/api/v1/auth/oidc/login`. The provider sends the
//! browser back to the server, which comes back here with `#sso_code=…` (a one-time code, in the
//! fragment so that no server ever logs it) to redeem for the session, or `#sso_error=REASON`.

import { t } from "./i18n";

const STORAGE_KEY = "metaward.session";

interface Session {
  access_token: string;
  refresh_token: string;
  /** Epoch ms when the access token expires. */
  expires_at: number;
  user: { name: string; role: string; wards: string[] | "*" };
}

interface LoginAnswer {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  user: Session["user"];
}

function load(): Session | null {
  try {
    const text = sessionStorage.getItem(STORAGE_KEY);
    return text ? (JSON.parse(text) as Session) : null;
  } catch {
    return null;
  }
}

function save(answer: LoginAnswer): Session {
  const session: Session = {
    access_token: answer.access_token,
    refresh_token: answer.refresh_token,
    expires_at: Date.now() + answer.expires_in * 1000,
    user: answer.user,
  };
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  return session;
}

let refreshTimer: number | undefined;

export function accessToken(): string | null {
  return load()?.access_token ?? null;
}

export function currentUser(): Session["user"] | null {
  return load()?.user ?? null;
}

/** `fetch` with the bearer token. */
export function authFetch(input: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const token = accessToken();
  if (token) headers.set("Authorization", `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}

async function post(path: string, body: unknown): Promise<Response> {
  return fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

function scheduleRefresh(session: Session, onSignedOut: () => void): void {
  window.clearTimeout(refreshTimer);
  const inMs = Math.max(5_000, session.expires_at - Date.now() - 60_000);
  refreshTimer = window.setTimeout(async () => {
    const answer = await post("/api/v1/auth/refresh", { refresh_token: session.refresh_token }).catch(() => null);
    if (answer?.ok) {
      scheduleRefresh(save((await answer.json()) as LoginAnswer), onSignedOut);
    } else {
      sessionStorage.removeItem(STORAGE_KEY);
      onSignedOut();
    }
  }, inMs);
}

/** What the single sign-on redirect left in the URL fragment, taken out of the address bar and
 * the history at once (the code works once and only for a minute, but need not linger). */
function takeSsoResult(): { code?: string; error?: string } {
  const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const code = fragment.get("sso_code") ?? undefined;
  const error = fragment.get("sso_error") ?? undefined;
  if (code || error) {
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  return { code, error };
}

/** Shows why single sign-on failed; a known reason follows the language switch (data-i18n). */
function showSsoError(message: HTMLElement, reason: string): void {
  const key = `sso.error.${reason}`;
  if (t(key) === key) {
    delete message.dataset.i18n;
    message.textContent = `${t("sso.error")} (${reason})`;
  } else {
    message.dataset.i18n = key;
    message.textContent = t(key);
  }
}

/** Offers single sign-on on the form when the server has it. */
async function offerSso(): Promise<void> {
  const box = document.getElementById("login-sso-box") as HTMLElement | null;
  if (!box) return;
  const answer = await fetch("/api/v1/auth/config").catch(() => null);
  const config = answer?.ok ? ((await answer.json()) as { sso?: { name: string; login: string } | null }) : null;
  const sso = config?.sso;
  if (!sso) {
    box.hidden = true;
    return;
  }
  (document.getElementById("login-sso-name") as HTMLElement).textContent = sso.name;
  const button = document.getElementById("login-sso") as HTMLButtonElement;
  button.onclick = () => {
    const message = document.getElementById("login-message") as HTMLElement;
    delete message.dataset.i18n;
    message.textContent = t("sso.signing_in");
    window.location.assign(sso.login);
  };
  box.hidden = false;
}

/** Resolves once there is a live session: the stored one, one from single sign-on, or one from
 * the login form. */
export async function signIn(onSignedOut: () => void): Promise<void> {
  const sso = takeSsoResult();
  const message = document.getElementById("login-message") as HTMLElement;
  if (sso.code) {
    const answer = await post("/api/v1/auth/oidc/redeem", { code: sso.code }).catch(() => null);
    if (answer?.ok) {
      const session = save((await answer.json()) as LoginAnswer);
      scheduleRefresh(session, onSignedOut);
      return;
    }
    sso.error = answer ? "bad_code" : "provider_unreachable";
  }
  const stored = load();
  if (!sso.error && stored && stored.expires_at > Date.now() + 5_000) {
    scheduleRefresh(stored, onSignedOut);
    return;
  }
  const form = document.getElementById("login") as HTMLFormElement;
  form.hidden = false;
  delete message.dataset.i18n;
  message.textContent = "";
  if (sso.error) showSsoError(message, sso.error);
  void offerSso();
  (form.elements.namedItem("username") as HTMLInputElement).focus();
  await new Promise<void>((resolve) => {
    form.onsubmit = async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      delete message.dataset.i18n;
      message.textContent = "signing in…";
      const answer = await post("/api/v1/auth/login", {
        username: String(data.get("username") ?? ""),
        password: String(data.get("password") ?? ""),
      }).catch(() => null);
      if (!answer) {
        message.textContent = "the server cannot be reached";
        return;
      }
      if (!answer.ok) {
        const error = (await answer.json().catch(() => null)) as { error?: { message?: string } } | null;
        message.textContent = error?.error?.message ?? `sign-in failed (${answer.status})`;
        return;
      }
      const session = save((await answer.json()) as LoginAnswer);
      (form.elements.namedItem("password") as HTMLInputElement).value = "";
      form.hidden = true;
      message.textContent = "";
      scheduleRefresh(session, onSignedOut);
      resolve();
    };
  });
}

/** Whether the server still knows this session (a restart ends every session). A 401 clears
 * it here too; a network error says nothing, so the session is kept. */
export async function sessionAlive(): Promise<boolean> {
  if (!accessToken()) return false;
  const answer = await authFetch("/api/v1/auth/me").catch(() => null);
  if (answer?.status === 401) {
    window.clearTimeout(refreshTimer);
    sessionStorage.removeItem(STORAGE_KEY);
    return false;
  }
  return true;
}

/** Ends the session on the server and here. */
export async function signOut(): Promise<void> {
  window.clearTimeout(refreshTimer);
  await authFetch("/api/v1/auth/logout", { method: "POST" }).catch(() => null);
  sessionStorage.removeItem(STORAGE_KEY);
}
