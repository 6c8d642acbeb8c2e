//! The live stream connection: one WebSocket to /api/v1/stream on the page's origin, reconnecting
//! with capped exponential backoff. Each (re)connection starts with a fresh snapshot, which the
//! caller re-applies whole; nothing from an earlier connection is trusted after a reconnect.

import type { ServerMessage } from "./protocol";

export type ConnectionState =
  | { kind: "connecting"; attempt: number }
  | { kind: "open" }
  | { kind: "waiting"; retryInMs: number; attempt: number };

export interface StreamHandlers {
  onMessage(message: ServerMessage): void;
  onState(state: ConnectionState): void;
}

const INITIAL_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 15_000;

/** The stream's URL for the page's filters and the signed-in user's token (read at each
 * connection, so a reconnect uses the renewed token). */
export function streamUrl(location: Location, token: string | null): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // Pass the page's ward/patient filters through to the stream.
  const page = new URLSearchParams(location.search);
  const query = new URLSearchParams();
  for (const key of ["ward", "patient"]) {
    const value = page.get(key);
    if (value) query.set(key, value);
  }
  if (token) query.set("access_token", token);
  const suffix = query.toString() ? `?${query}` : "";
  return `${scheme}//${location.host}/api/v1/stream${suffix}`;
}

export class LiveStream {
  private socket: WebSocket | null = null;
  private attempt = 0;
  private retryTimer: number | undefined;
  private stopped = false;

  constructor(
    private readonly url: () => string,
    private readonly handlers: StreamHandlers,
  ) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.retryTimer);
    this.socket?.close();
    this.socket = null;
  }

  /** Opens a fresh connection now (and so a fresh snapshot), replacing the current one. */
  resubscribe(): void {
    if (this.stopped) return;
    const old = this.socket;
    this.socket = null;
    old?.close();
    window.clearTimeout(this.retryTimer);
    this.connect();
  }

  /** Sends a text frame if connected (presence); false when not connected. */
  send(text: string): boolean {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(text);
    return true;
  }

  /** Called by the page once a snapshot has been applied: the connection is known good. */
  markHealthy(): void {
    this.attempt = 0;
  }

  private connect(): void {
    this.attempt += 1;
    this.handlers.onState({ kind: "connecting", attempt: this.attempt });
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.onopen = () => this.handlers.onState({ kind: "open" });
    socket.onmessage = (event: MessageEvent) => {
      if (typeof event.data !== "string") return;
      let message: ServerMessage;
      try {
        message = JSON.parse(event.data) as ServerMessage;
      } catch {
        console.warn("metaward: ignored a frame that is not JSON");
        return;
      }
      if (message && typeof message === "object" && "type" in message) {
        this.handlers.onMessage(message);
      }
    };
    socket.onclose = () => {
      // A socket replaced by `resubscribe` closes without asking for another.
      if (this.socket !== socket) return;
      this.socket = null;
      if (!this.stopped) this.scheduleRetry();
    };
    // An error is always followed by close; the retry is scheduled there.
    socket.onerror = () => {};
  }

  private scheduleRetry(): void {
    const base = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** Math.max(0, this.attempt - 1));
    const retryInMs = Math.round(base * (0.75 + Math.random() * 0.5));
    this.handlers.onState({ kind: "waiting", retryInMs, attempt: this.attempt });
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.connect(), retryInMs);
  }
}
