//! Text and colour for what the page shows: value formatting, UCUM units for people, and the
//! status scale. Colour is never the only signal: every status also has a word.

import * as THREE from "three";

const UNIT_TEXT: Record<string, string> = {
  "Cel": "°C",
  "mm[Hg]": "mmHg",
  "[ppm]": "ppm",
  "ug/m3": "µg/m³",
  "1": "",
  "{score}": "",
};

export function unitText(ucum: string | null | undefined): string {
  if (!ucum) return "";
  return UNIT_TEXT[ucum] ?? ucum;
}

const SHORT_NAMES: Record<string, string> = {
  heart_rate: "HR",
  pulse_rate: "PR",
  spo2: "SpO₂",
  respiration_rate: "RR",
  body_temperature: "Temp",
  nibp_systolic: "NIBP",
  etco2: "EtCO₂",
  blood_glucose: "Glu",
  battery: "Batt",
  room_temperature: "Temp",
  room_humidity: "Humidity",
  room_co2: "CO₂",
  room_noise: "Noise",
  room_illuminance: "Light",
  room_pm25: "PM2.5",
};

export function shortName(metric: string, display?: string): string {
  return SHORT_NAMES[metric] ?? display ?? metric;
}

export function formatNumber(value: number, decimals: number | undefined): string {
  if (!Number.isFinite(value)) return "–";
  return value.toFixed(Math.max(0, Math.min(3, decimals ?? 1)));
}

export type StatusWord = "stable" | "watch" | "alert" | "unknown";

export function statusWord(deviation: number | null | undefined): StatusWord {
  if (deviation == null || !Number.isFinite(deviation)) return "unknown";
  if (deviation < 0.25) return "stable";
  if (deviation < 0.6) return "watch";
  return "alert";
}

const GREEN = new THREE.Color(0x2e9d4f);
const AMBER = new THREE.Color(0xf0a020);
const RED = new THREE.Color(0xd9342b);
const GREY = new THREE.Color(0x8a8f98);

/** Green (0) through amber (0.5) to red (1). */
export function statusColor(deviation: number | null | undefined, target = new THREE.Color()): THREE.Color {
  if (deviation == null || !Number.isFinite(deviation)) return target.copy(GREY);
  const d = Math.min(1, Math.max(0, deviation));
  return d < 0.5 ? target.lerpColors(GREEN, AMBER, d / 0.5) : target.lerpColors(AMBER, RED, (d - 0.5) / 0.5);
}

export function isOutOfNormal(value: number, normal: [number, number] | null | undefined): boolean {
  if (!normal) return false;
  return value < normal[0] || value > normal[1];
}
