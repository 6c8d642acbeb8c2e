//! What the page knows of the clinical state: each patient's NEWS2 (as streamed) and the active
//! alarms (snapshot, then every event in order). Colours for bands and priorities live here,
//! beside the words and symbols that go with them: colour is never the only signal.

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
