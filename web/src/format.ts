//! Text for what the page shows: value formatting, UCUM units for people, short metric names.
//! (NEWS2 band and alarm colours, with their words and shapes, are in clinical.ts.)

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

export function isOutOfNormal(value: number, normal: [number, number] | null | undefined): boolean {
  if (!normal) return false;
  return value < normal[0] || value > normal[1];
}
