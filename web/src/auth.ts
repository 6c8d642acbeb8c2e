//! Signing in: a minimal form, the session kept in sessionStorage (gone when the tab closes),
//! the access token sent as `Authorization: Bearer` on fetch and as `?access_token=` on the
//! WebSocket (browsers cannot set headers there). The access token is renewed with the refresh
//! token a minute before it expires; when that fails, the form comes back.

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

/** Resolves once there is a live session: the stored one, or one from the login form. */
export async function signIn(onSignedOut: () => void): Promise<void> {
  const stored = load();
  if (stored && stored.expires_at > Date.now() + 5_000) {
    scheduleRefresh(stored, onSignedOut);
    return;
  }
  const form = document.getElementById("login") as HTMLFormElement;
  const message = document.getElementById("login-message") as HTMLElement;
  form.hidden = false;
  (form.elements.namedItem("username") as HTMLInputElement).focus();
  await new Promise<void>((resolve) => {
    form.onsubmit = async (event) => {
      event.preventDefault();
      const data = new FormData(form);
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
