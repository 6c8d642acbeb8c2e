//! The WebSocket stream contract (docs/stream.md), as the page reads it.
//! Only the server knows the wire format; these types mirror it and must never be widened by guesswork.

export interface BedInfo {
  id: string;
  label: string;
  x: number;
  z: number;
  rotation: number;
}

export interface RoomInfo {
  id: string;
  name: string;
  x: number;
  z: number;
  width: number;
  depth: number;
  beds: BedInfo[];
}

export interface WardInfo {
  id: string;
  name: string;
  rooms: RoomInfo[];
}

export interface ConditionInfo {
  code: string;
  system: string;
  display: string;
  regions: string[];
  /** `ward` (set up for the ward) or `record` (an active FHIR Condition). */
  source?: string;
  record_id?: string;
}

export interface CodingInfo {
  system: string;
  code: string;
}

/** An active medication of the record (docs/stream.md). */
export interface MedicationInfo {
  reference: string;
  display: string;
  coding: CodingInfo | null;
  dosage: string | null;
  since: string | null;
  status: string;
  /** The conditions it is given for, as displays. */
  reasons: string[];
  /** The avatar regions it relates to (its reasons', else the drug table's). */
  regions: string[];
}

export interface AllergyInfo {
  reference: string;
  display: string;
  coding: CodingInfo | null;
  /** `low`, `high`, `unable-to-assess`. */
  criticality: string | null;
  category: string[];
  reactions: string[];
  recorded: string | null;
  verification: string | null;
}

export interface LabInfo {
  reference: string;
  display: string;
  coding: CodingInfo | null;
  value: number | null;
  unit: string | null;
  text: string | null;
  effective: string | null;
  interpretation: string | null;
  reference_range: [number | null, number | null] | null;
  reference_text: string | null;
  /** The record's interpretation code, else H/L/N from the reference range; null if neither says. */
  flag: string | null;
  status: string | null;
  regions: string[];
}

export interface PatientInfo {
  id: string;
  name: string;
  age: number;
  sex: string;
  bed_id: string | null;
  conditions: ConditionInfo[];
  medications?: MedicationInfo[];
  allergies?: AllergyInfo[];
  labs?: LabInfo[];
}

export interface MetricInfo {
  key: string;
  display: string;
  unit: string;
  decimals: number;
  normal?: [number, number] | null;
  /** The catalog's default body region, when the server sends it. */
  region?: string | null;
}

export interface ValueItem {
  patient_id: string | null;
  room_id: string | null;
  bed_id: string | null;
  device_id: string | null;
  metric: string;
  value: number;
  unit: string;
  time: number;
  received: number;
  region: string | null;
  artefact: boolean;
}

export interface StatusItem {
  patient_id: string;
  deviation: number;
  worst_metric: string | null;
}

export interface SnapshotMessage {
  type: "snapshot";
  server_time: number;
  wards: WardInfo[];
  patients: PatientInfo[];
  metrics: MetricInfo[];
  values: ValueItem[];
  status: StatusItem[];
  /** The active alarms the filter allows (docs/alarms.md). */
  alarms?: AlarmInfo[];
  /** The current NEWS2 per patient (docs/news2.md). */
  scores?: ScoreInfo[];
}

/** One NEWS2 parameter's line of the breakdown. */
export interface ScoreParameter {
  parameter: string;
  sub_score: number | null;
  /** `scored`, or why it could not be: `missing`, `stale`, `artefact-only`, `invalid`, `needs-air-or-oxygen`. */
  status: string;
  value?: number;
  charted?: number;
  metric?: string;
  time?: number;
  age_ms?: number;
  window_ms?: number;
}

export type Band = "zero" | "low" | "low-medium" | "medium" | "high";

export interface ScoreInfo {
  patient_id: string;
  score: "news2";
  at: number;
  total: number;
  complete: boolean;
  band: Band;
  clinical_risk: string;
  response: string;
  scale: 1 | 2;
  scale_reason: string;
  scale_reason_text?: string;
  /** Why this scale, as data: `kind` and the target or the diagnosis. */
  scale_reason_detail?: { kind: string; target?: [number, number]; system?: string; code?: string; display?: string };
  parameters: ScoreParameter[];
}

export type AlarmPriority = "low" | "medium" | "high";

export interface AlarmInfo {
  id: number;
  subject: { kind: "patient" | "room" | "device"; id: string };
  kind: string;
  condition: string;
  side?: string | null;
  priority: AlarmPriority;
  state: string;
  latched: boolean;
  message: string;
  value?: number | null;
  limit?: number | null;
  raised_at: number;
  condition_present: boolean;
  acknowledged_by: string | null;
  acknowledged_at: number | null;
  escalations: number;
  silenced: unknown;
  resolved_at: number | null;
}

export interface AlarmEvent {
  at: number;
  transition: string;
  by: string | null;
  alarm: AlarmInfo;
}

export interface ScoresMessage {
  type: "scores";
  items: ScoreInfo[];
}

export interface AlarmsMessage {
  type: "alarms";
  items: AlarmEvent[];
}

/** A body region's status from `GET /patients/{id}/twin` or `/regions`. */
export type RegionState = "normal" | "condition" | "abnormal" | "critical";

export interface RegionReason {
  kind: "value" | "unusable" | "condition";
  metric?: string;
  value?: number;
  state?: string;
  why?: string;
  code?: string;
  display?: string;
}

export interface RegionStatusInfo {
  region: string;
  state: RegionState;
  reasons: RegionReason[];
}

export interface ValuesMessage {
  type: "values";
  items: ValueItem[];
}

export interface WaveformMessage {
  type: "waveform";
  patient_id: string;
  metric: string;
  start: number;
  rate_hz: number;
  samples: number[];
  region: string | null;
}

export interface StatusMessage {
  type: "status";
  items: StatusItem[];
}

export interface LaggedMessage {
  type: "lagged";
  skipped_waveform_chunks: number;
}

/** Another clinician watching the ward; `gone` when they left. */
export interface PresenceItem {
  id: string;
  name?: string;
  bed_id?: string | null;
  position?: [number, number, number] | null;
  target?: [number, number, number] | null;
  at?: number;
  gone?: boolean;
}

export interface PresenceMessage {
  type: "presence";
  items: PresenceItem[];
}

/** A patient whose view changed (the record, the bed), or `{ id, gone: true }` when they left the client's wards. */
export interface PatientMessage {
  type: "patient";
  items: Array<PatientInfo | { id: string; gone: true }>;
}

/** A round note, as `GET /api/v1/rounds/notes` lists it. */
export interface RoundNote {
  id: number;
  patient_id: string;
  author: string;
  at: number;
  text: string;
  acvpu: string | null;
  reviewed: boolean;
}

/** Round notes written since (by anyone seeing the patient's ward), oldest first. */
export interface NotesMessage {
  type: "notes";
  items: RoundNote[];
}

export interface ErrorMessage {
  type: "error";
  message: string;
}

export type ServerMessage =
  | SnapshotMessage
  | ValuesMessage
  | WaveformMessage
  | StatusMessage
  | ScoresMessage
  | AlarmsMessage
  | PresenceMessage
  | PatientMessage
  | NotesMessage
  | ErrorMessage
  | LaggedMessage;

/** Body-region keys the avatar has, exactly as the catalog and the stream name them. */
export const BODY_REGIONS = [
  "head", "face", "neck", "chest", "heart", "lung_left", "lung_right", "abdomen", "pelvis", "back",
  "axilla_left", "axilla_right", "upper_arm_left", "upper_arm_right", "forearm_left", "forearm_right",
  "hand_left", "hand_right", "finger_left", "finger_right", "thigh_left", "thigh_right",
  "leg_left", "leg_right", "foot_left", "foot_right",
] as const;

export type BodyRegion = (typeof BODY_REGIONS)[number];

const REGION_SET: ReadonlySet<string> = new Set(BODY_REGIONS);

/**
 * Maps a region key from the stream to one the avatar has. A paired part without a side
 * ("lung", "axilla") means "either" in the model; the avatar shows it on the left.
 */
export function resolveRegion(key: string | null | undefined): BodyRegion | null {
  if (!key) return null;
  if (REGION_SET.has(key)) return key as BodyRegion;
  const left = `${key}_left`;
  if (REGION_SET.has(left)) return left as BodyRegion;
  return null;
}
