//! What the page knows of the clinical state: each patient's NEWS2 (as streamed) and the active
//! alarms (snapshot, then every event in order). Colours for bands and priorities live here,
//! beside the words and symbols that go with them: colour is never the only signal.

import { formatNumber } from "./format";
import { t, tOr, tf } from "./i18n";
import type { AlarmEvent, AlarmInfo, AlarmPriority, Band, ScoreInfo } from "./protocol";

/** NEWS2 band colours after the RCP chart's shading: none, yellow, amber, orange, red. */
export const BAND_COLOR: Record<Band, string> = {
  zero: "#2e9d4f",
  low: "#c9c23a",
  "low-medium": "#f0a020",
  medium: "#f06a1e",
  high: "#d9342b",
};
export const NO_SCORE_COLOR = "#8a8f98";

/** A shape per band, so the band reads without colour: ○ △ ◆ ▲ ■. */
export const BAND_SYMBOL: Record<Band, string> = {
  zero: "○",
  low: "△",
  "low-medium": "◆",
  medium: "▲",
  high: "■",
};

const BAND_RANK: Record<Band, number> = { zero: 0, low: 1, "low-medium": 2, medium: 3, high: 4 };
const PRIORITY_RANK: Record<AlarmPriority, number> = { low: 1, medium: 2, high: 3 };
export const PRIORITY_COLOR: Record<AlarmPriority, string> = {
  low: "#5aa9e6",
  medium: "#f0a020",
  high: "#d9342b",
};

export function bandRank(score: ScoreInfo | undefined): number {
  return score ? BAND_RANK[score.band] ?? -1 : -1;
}

export function priorityRank(priority: AlarmPriority | null | undefined): number {
  return priority ? PRIORITY_RANK[priority] ?? 0 : 0;
}

export class ClinicalState {
  readonly scores = new Map<string, ScoreInfo>();
  readonly alarms = new Map<number, AlarmInfo>();

  reset(scores: ScoreInfo[], alarms: AlarmInfo[]): void {
    this.scores.clear();
    this.alarms.clear();
    for (const score of scores) this.scores.set(score.patient_id, score);
    for (const alarm of alarms) this.setAlarm(alarm);
  }

  applyScores(items: ScoreInfo[]): string[] {
    for (const score of items) this.scores.set(score.patient_id, score);
    return items.map((s) => s.patient_id);
  }

  /** Applies alarm events in order; returns the subjects (`kind/id`) whose alarms changed. */
  applyAlarmEvents(events: AlarmEvent[]): Set<string> {
    const touched = new Set<string>();
    for (const event of events) {
      this.setAlarm(event.alarm);
      touched.add(`${event.alarm.subject.kind}/${event.alarm.subject.id}`);
    }
    return touched;
  }

  private setAlarm(alarm: AlarmInfo): void {
    if (alarm.resolved_at != null || alarm.state === "resolved") this.alarms.delete(alarm.id);
    else this.alarms.set(alarm.id, alarm);
  }

  /** Active alarms of one subject, highest priority first, then newest. */
  alarmsOf(kind: string, id: string): AlarmInfo[] {
    const list: AlarmInfo[] = [];
    for (const alarm of this.alarms.values()) {
      if (alarm.subject.kind === kind && alarm.subject.id === id) list.push(alarm);
    }
    return list.sort((a, b) => priorityRank(b.priority) - priorityRank(a.priority) || b.raised_at - a.raised_at);
  }

  /** Unacknowledged first: what still asks for someone. */
  unacknowledgedOf(kind: string, id: string): AlarmInfo[] {
    return this.alarmsOf(kind, id).filter((a) => a.acknowledged_at == null);
  }
}

/** The NEWS2 band a score alarm's priority stands for (low-medium → low, medium, high). */
const RISK_OF_PRIORITY: Record<AlarmPriority, string> = { low: "low-medium", medium: "medium", high: "high" };

/** A metric's name for alarm text: its own term, else the catalog's name, else the key. */
function metricName(metric: string, display?: string): string {
  return tOr(`metric.${metric}`, display ?? metric.replace(/_/g, " "));
}

/**
 * An alarm in the page's language, from its structured fields (kind, condition, side, value,
 * limit); the server's English message when the fields do not say enough.
 */
export function alarmText(alarm: AlarmInfo, display?: (metric: string) => string | undefined): string {
  const value = alarm.value;
  switch (alarm.kind) {
    case "physiological":
    case "environmental": {
      if (value == null || alarm.limit == null || (alarm.side !== "low" && alarm.side !== "high")) break;
      const name = metricName(alarm.condition, display?.(alarm.condition));
      // The value is the latest while the alarm lasts (docs/alarms.md), not only the one
      // that raised it: it is said as such, after the limit that was crossed.
      const number = (n: number) => formatNumber(n, Number.isInteger(n) ? 0 : 1);
      return tf("alarm.limit", {
        metric: name, side: t(alarm.side === "low" ? "alarm.at_or_below" : "alarm.at_or_above"),
        limit: number(alarm.limit), value: number(value),
      });
    }
    case "score":
      if (alarm.condition !== "news2" || value == null) break;
      return tf("alarm.score", { total: value, risk: t(`risk.${RISK_OF_PRIORITY[alarm.priority]}`) });
    case "technical": {
      const key = `technical.${alarm.condition}`;
      if (t(key) === key) break;
      if (alarm.condition === "low_battery") {
        const percent = value ?? Number(/(\d+(?:\.\d+)?)%/.exec(alarm.message)?.[1]);
        if (!Number.isFinite(percent)) break;
        return tf(key, { value: formatNumber(percent, 0) });
      }
      return t(key);
    }
    default:
      break;
  }
  return alarm.message;
}

/** Why the score uses its SpO2 scale, in the page's language; the server's sentence if unknown. */
export function scaleReasonText(score: ScoreInfo): string {
  const detail = score.scale_reason_detail;
  if (!detail) return score.scale_reason_text ?? score.scale_reason;
  const key = `scale.${detail.kind}`;
  if (t(key) === key) return score.scale_reason;
  return tf(key, {
    low: detail.target?.[0] ?? "", high: detail.target?.[1] ?? "",
    code: detail.code ?? "", display: detail.display ?? "",
  });
}

/** The clinical response a band asks for (RCP NEWS2 Chart 4), in the page's language. */
export function responseText(score: ScoreInfo): string {
  return tOr(`response.${score.band}`, score.response);
}
