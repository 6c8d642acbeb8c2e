//! A scrolling ECG strip for the selected patient (canvas 2D). Samples are placed at their true
//! times (chunk start + i / rate_hz) and the strip plays back at wall-clock speed a little behind
//! the newest sample, so it scrolls at the true rate whatever the chunk size. Missing chunks
//! (skipped when the page lagged) show as gaps, never as an invented line.

const WINDOW_MS = 5000;
const PLAYBACK_DELAY_MS = 600;
const MAX_SAMPLES = 4000;

export class EcgStrip {
  private readonly context: CanvasRenderingContext2D;
  private times: number[] = [];
  private samples: number[] = [];
  private rateHz = 0;
  /** Maps local performance.now() to sample time; set by the first chunk after a reset. */
  private clockOffset: number | null = null;
  private patientId: string | null = null;
  private metric = "ecg_ii";
  /** Which waveform family the strip shows: ECG leads (heart) or the plethysmogram (finger). */
  private kind: "ecg" | "pleth" = "ecg";
  private label: (kind: "ecg" | "pleth", waiting: boolean) => string = (kind, waiting) =>
    `${kind === "ecg" ? "ECG lead II" : "Plethysmogram"}${waiting ? " · waiting for waveform" : ""}`;

  constructor(private readonly canvas: HTMLCanvasElement, private readonly caption: HTMLElement) {
    this.context = canvas.getContext("2d")!;
  }

  select(patientId: string | null, kind: "ecg" | "pleth" = "ecg"): void {
    if (patientId === this.patientId && kind === this.kind) return;
    this.patientId = patientId;
    this.kind = kind;
    this.metric = kind === "ecg" ? "ecg_ii" : "pleth";
    this.reset();
  }

  /** The caption's words, in the page's language. */
  setLabel(label: (kind: "ecg" | "pleth", waiting: boolean) => string): void {
    this.label = label;
    this.reset();
  }

  get showing(): "ecg" | "pleth" {
    return this.kind;
  }

  reset(): void {
    this.times = [];
    this.samples = [];
    this.clockOffset = null;
    this.caption.textContent = this.patientId ? this.label(this.kind, true) : "";
  }

  push(patientId: string, metric: string, start: number, rateHz: number, chunk: number[]): void {
    if (patientId !== this.patientId || !metric.startsWith(this.kind) || rateHz <= 0) return;
    if (this.metric !== metric) {
      this.metric = metric;
      this.reset();
    }
    this.rateHz = rateHz;
    const now = performance.now();
    const end = start + (chunk.length / rateHz) * 1000;
    // Resynchronise when the stream jumps (first chunk, reconnect, long gap).
    if (this.clockOffset === null || Math.abs(end - (now + this.clockOffset)) > 4000) {
      this.clockOffset = end - now;
      this.times = [];
      this.samples = [];
    }
    for (let i = 0; i < chunk.length; i++) {
      this.times.push(start + (i * 1000) / rateHz);
      this.samples.push(chunk[i]);
    }
    if (this.times.length > MAX_SAMPLES) {
      const drop = this.times.length - MAX_SAMPLES;
      this.times.splice(0, drop);
      this.samples.splice(0, drop);
    }
    const lead = this.metric === "ecg_ii" || this.metric === "pleth" ? this.label(this.kind, false) : this.metric;
    this.caption.textContent = `${lead} · ${rateHz} Hz · 5 s`;
  }

  draw(): void {
    const { canvas, context } = this;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.fillStyle = "#0b1410";
    context.fillRect(0, 0, width, height);
    // Grid: one major line per 200 ms, as on paper at 25 mm/s.
    const pxPerMs = width / WINDOW_MS;
    context.strokeStyle = "#173326";
    context.lineWidth = 1;
    context.beginPath();
    for (let t = 0; t <= WINDOW_MS; t += 200) {
      const x = Math.round(t * pxPerMs) + 0.5;
      context.moveTo(x, 0);
      context.lineTo(x, height);
    }
    context.stroke();
    if (this.clockOffset === null || this.times.length < 2) return;

    const playhead = performance.now() + this.clockOffset - PLAYBACK_DELAY_MS;
    const from = playhead - WINDOW_MS;
    let lo = Infinity;
    let hi = -Infinity;
    let first = 0;
    while (first < this.times.length && this.times[first] < from) first++;
    for (let i = first; i < this.times.length && this.times[i] <= playhead; i++) {
      lo = Math.min(lo, this.samples[i]);
      hi = Math.max(hi, this.samples[i]);
    }
    if (!Number.isFinite(lo)) return;
    const span = Math.max(hi - lo, 1e-6);
    const pad = height * 0.12;
    const gapMs = (2.5 * 1000) / this.rateHz;
    context.strokeStyle = "#4be38a";
    context.lineWidth = 1.5;
    context.beginPath();
    let previous = -Infinity;
    for (let i = first; i < this.times.length && this.times[i] <= playhead; i++) {
      const x = (this.times[i] - from) * pxPerMs;
      const y = height - pad - ((this.samples[i] - lo) / span) * (height - 2 * pad);
      if (this.times[i] - previous > gapMs) context.moveTo(x, y);
      else context.lineTo(x, y);
      previous = this.times[i];
    }
    context.stroke();
  }
}
