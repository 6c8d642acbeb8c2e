//! The ward page: wires the live stream to the 3D ward, the camera, the side panel and the test
//! hooks (window.__metaward). Rendering happens only on requestAnimationFrame.

import * as THREE from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
import { CSS2DObject, CSS2DRenderer } from "three/examples/jsm/renderers/CSS2DRenderer.js";
import "./style.css";
import { timeSeriesChart, type ChartPoint } from "./chart";
import { BAND_COLOR, BAND_SYMBOL, ClinicalState, NO_SCORE_COLOR, alarmText, bandRank, priorityRank, responseText, scaleReasonText } from "./clinical";
import { allergiesHtml, labsHtml, medicationsHtml, relatedHtml } from "./record";
import { EcgStrip } from "./ecg";
import { formatNumber, unitText } from "./format";
import { applyStatic, language, onLanguageChange, regionName, setLanguage, t, tOr } from "./i18n";
import {
  resolveRegion, type AlarmInfo, type BodyRegion, type PatientInfo, type PresenceItem, type RoundNote, type RegionStatusInfo, type ServerMessage, type SnapshotMessage, type ValueItem,
} from "./protocol";
import { accessToken, authFetch, currentUser, sessionAlive, signIn, signOut } from "./auth";
import { LiveStream, streamUrl, type ConnectionState } from "./stream";
import { SharedKit, Ward, metricLabel, paintAlarmChip, type BedView } from "./ward";
import { VrSession, type VrCardContent, type VrLabel } from "./vr";

interface MetawardHooks {
  ready: boolean;
  beds: number;
  patients: number;
  valueUpdates: number;
  /** Latest value per `<patient_id or room_id>/<metric>`. */
  lastValues: Record<string, number>;
  connection: string;
  skippedWaveformChunks: number;
  /** Flies the camera to a bed (the same as clicking it); for tests and deep links. */
  focusBed(bedId: string): boolean;
  /** The first bed's id that has a patient, if any. */
  firstOccupiedBed(): string | null;
  /** The current NEWS2 total and band per patient, as the page holds them. */
  scores(): Record<string, { total: number; band: string }>;
  /** Each region's state on a patient's avatar, as coloured now. */
  regionStates(patientId: string): Record<string, string>;
  /** How many region refreshes from the server have been applied. */
  regionRefreshes: number;
  /** How many snapshots have been applied (one per connection). */
  snapshots: number;
  /** How many changed patient views (`patient` messages' items) have arrived. */
  patientUpdates: number;
  /** A patient's view as the page holds it (record included). */
  patient(patientId: string): PatientInfo | null;
  /** Opens a body region's detail for the selected bed (the same as clicking it). */
  selectRegion(region: string): boolean;
  /** The bed ids of the overview list in the order shown. */
  overviewOrder(): string[];
  /** Other clinicians present, as this page shows them. */
  presence(): Array<{ id: string; name: string; bed_id: string | null }>;
  /** Active alarms per subject (`patient/ID`, `room/ID`), as the page holds them. */
  alarmCounts(): Record<string, number>;
  /** The current round's fixed worklist (bed ids), empty before the round starts. */
  roundWorklist(): string[];
  /** Visits the next patient of the acuity worklist; returns its bed id. */
  nextPatient(): string | null;
  selectedBed(): string | null;
  language(): string;
  xrSupported: boolean;
  xrPresenting: boolean;
  /** Frames rendered in an immersive session, and teleports made there. */
  xrFrames(): number;
  xrTeleports(): number;
  /** Selects (trigger presses) the controllers made. */
  xrSelects(): number;
  /** The in-world panel's text (title first) and the in-world region labels' rows, as drawn. */
  xrPanel(): string[];
  xrLabels(): Record<string, string[]>;
  /** A controller pose (reference-space position and quaternion) aiming at a region of the selected bed, or at the in-world panel (`panel`). */
  xrAim(region: string): { position: number[]; quaternion: number[] } | null;
  /** The region whose detail is open, if any. */
  selectedRegion(): string | null;
  /** Where a bed (or, with `region`, that region of its avatar) is on the screen now, in client
   * pixels: for tests that click or tap it as a person would. */
  screenPoint(bedId: string, region?: string): { x: number; y: number } | null;
  /** The point the view orbits around (moved by the arrow keys, flights and drags). */
  cameraTarget(): number[];
}

declare global {
  interface Window {
    __metaward: MetawardHooks;
  }
}

const LABEL_DISTANCE = 9;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const viewport = $("viewport");
const connectionNode = $("connection");
const lagNode = $("lag");
const userNode = $("user");
const logoutNode = $("logout");
const tooltip = $("tooltip");
const panel = $("panel");
const panelBody = $("panel-body");
const ecg = new EcgStrip($<HTMLCanvasElement>("ecg"), $("ecg-caption"));
const regionDetail = $("region-detail");
const overviewRows = $("overview-rows");
const sortButton = $<HTMLButtonElement>("sort");
const clinical = new ClinicalState();
applyStatic();
ecg.setLabel((kind, waiting) => `${t(kind === "ecg" ? "wave.ecg" : "wave.pleth")}${waiting ? ` · ${t("wave.waiting")}` : ""}`);

const hooks: MetawardHooks = {
  ready: false,
  beds: 0,
  patients: 0,
  valueUpdates: 0,
  lastValues: {},
  connection: "connecting",
  skippedWaveformChunks: 0,
  focusBed: (bedId) => focusBed(bedId),
  firstOccupiedBed: () => {
    for (const view of ward?.beds.values() ?? []) if (view.patient) return view.bed.id;
    return null;
  },
  scores: () => Object.fromEntries([...clinical.scores.values()].map((s) => [s.patient_id, { total: s.total, band: s.band }])),
  regionStates: (patientId) => Object.fromEntries(ward?.bedByPatient.get(patientId)?.avatar?.states ?? []),
  regionRefreshes: 0,
  patientUpdates: 0,
  snapshots: 0,
  patient: (patientId) => ward?.patients.get(patientId) ?? null,
  selectRegion: (region) => selectRegion(region),
  overviewOrder: () => orderedBeds().map((v) => v.bed.id),
  roundWorklist: () => roundList ?? [],
  presence: () => [...others.values()].map((o) => ({ id: o.item.id, name: o.item.name ?? "", bed_id: o.item.bed_id ?? null })),
  alarmCounts: () => {
    const counts: Record<string, number> = {};
    for (const alarm of clinical.alarms.values()) {
      const key = `${alarm.subject.kind}/${alarm.subject.id}`;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  },
  nextPatient: () => nextPatient(),
  screenPoint: (bedId, region) => screenPoint(bedId, region),
  cameraTarget: () => controls.target.toArray(),
  selectedBed: () => selectedBedId,
  language: () => language(),
  xrSupported: false,
  xrPresenting: false,
  xrFrames: () => vr.frames,
  xrTeleports: () => vr.teleports,
  xrSelects: () => vr.selects,
  xrPanel: () => vr.panelText,
  xrLabels: () => vr.labelTexts(),
  xrAim: (region) => {
    if (region === "panel") return vr.aimAt(vr.panelPosition());
    const mesh = selectedBedId ? ward?.beds.get(selectedBedId)?.avatar?.regions.get(region as BodyRegion) : undefined;
    return mesh ? vr.aimAt(mesh.getWorldPosition(new THREE.Vector3())) : null;
  },
  selectedRegion: () => selectedRegion,
};
window.__metaward = hooks;

// ---- three.js scene -------------------------------------------------------------------------
/**
 * True on a software rasterizer (SwiftShader, llvmpipe: headless CI, VMs). There every pixel
 * costs CPU, so the page drops multisampling and renders at one device pixel per CSS pixel.
 */
function softwareRendering(): boolean {
  const gl = document.createElement("canvas").getContext("webgl2");
  if (!gl) return false;
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  return /swiftshader|llvmpipe|softpipe|software/i.test(name);
}
const software = softwareRendering();
const renderer = new THREE.WebGLRenderer({ antialias: !software, powerPreference: "high-performance" });
renderer.setPixelRatio(software ? 1 : Math.min(window.devicePixelRatio, 2));
renderer.setClearColor(0x1a222c);
viewport.append(renderer.domElement);

const labelRenderer = new CSS2DRenderer();
labelRenderer.domElement.className = "labels";
viewport.append(labelRenderer.domElement);

const scene = new THREE.Scene();
scene.add(new THREE.HemisphereLight(0xf2f6ff, 0x3a4250, 1.6));
const sun = new THREE.DirectionalLight(0xffffff, 1.6);
sun.position.set(8, 14, 6);
scene.add(sun);

const camera = new THREE.PerspectiveCamera(50, 1, 0.05, 500);
camera.position.set(10, 14, 18);
const controls = new OrbitControls(camera, labelRenderer.domElement);
controls.enableDamping = true;
controls.maxPolarAngle = Math.PI / 2 - 0.05;
controls.minDistance = 1;
controls.maxDistance = 150;

// Render on demand: a frame is drawn when the camera moves or the scene changes, never for a
// value whose text changed (labels are DOM). A still ward costs almost nothing per frame.
let needsRender = true;
const invalidate = () => {
  needsRender = true;
};
controls.addEventListener("change", invalidate);

const kit = new SharedKit();

// ---- VR: the round and the body by controller; see vr.ts --------------------------------------
const vrButton = $<HTMLButtonElement>("vr");
const vr = new VrSession(renderer, scene, camera, () => ward?.pickables ?? [], (hit, onPanel) => vrSelect(hit, onPanel), (presenting) => {
  hooks.xrPresenting = presenting;
  vrButton.dataset.i18n = presenting ? "vr.exit" : "vr.enter";
  vrButton.textContent = t(vrButton.dataset.i18n);
  if (presenting) vrNext();
  invalidate();
});
void VrSession.supported().then((supported) => {
  hooks.xrSupported = supported;
  vrButton.hidden = !supported;
});
vrButton.addEventListener("click", () => {
  void (vr.presenting ? vr.exit() : vr.enter()).catch((failure) => {
    vrButton.title = String(failure);
  });
});

/** The catalog's name of a metric (the English fallback of alarm and value texts). */
function metricDisplay(metric: string): string | undefined {
  return ward?.metrics.get(metric)?.display;
}

const REGION_STATE_COLOR: Record<string, string> = { critical: "#ff6b60", abnormal: "#f0a020", condition: "#c08af0", normal: "#8fd19e" };

/** A metric's latest value as text with its unit, or a dash. */
function valueText(view: BedView, metric: string): string {
  const item = view.latest.get(metric);
  if (!item) return "–";
  const info = ward?.metrics.get(metric);
  return `${formatNumber(item.value, info?.decimals)}${item.artefact ? "?" : ""}`;
}

/** The in-world panel: the selected region's detail, else the patient at the bed. */
function vrCard(view: BedView): VrCardContent {
  const patient = view.patient!;
  const region = selectedRegion;
  if (region) {
    const state = view.avatar?.states.get(region) ?? "normal";
    const lines: VrCardContent["lines"] = [];
    for (const metric of metricsAt(view, region)) {
      const item = view.latest.get(metric)!;
      const info = ward?.metrics.get(metric);
      const abnormal = info?.normal && (item.value < info.normal[0] || item.value > info.normal[1]);
      lines.push({ text: `${metricLabel(metric, info?.display)}  ${valueText(view, metric)} ${unitText(item.unit || info?.unit)}`, color: abnormal ? "#f0a020" : undefined });
    }
    const at = (regions: string[] | undefined) => (regions ?? []).includes(region);
    for (const condition of patient.conditions.filter((c) => at(c.regions))) lines.push({ text: `● ${condition.display || condition.code}`, color: "#c08af0" });
    for (const medication of (patient.medications ?? []).filter((m) => at(m.regions))) lines.push({ text: `℞ ${medication.display}${medication.dosage ? ` · ${medication.dosage}` : ""}` });
    for (const lab of (patient.labs ?? []).filter((l) => at(l.regions))) {
      const flagged = lab.flag && lab.flag !== "N";
      lines.push({ text: `${lab.display} ${lab.value ?? lab.text ?? ""} ${lab.unit ?? ""}${flagged ? ` ${lab.flag}` : ""}`, color: flagged ? "#f0a020" : undefined });
    }
    if (!lines.length) lines.push({ text: t("panel.related_none") });
    return { title: `${regionName(region)} · ${t(`region.${state}`)} · ${patient.name}`, accent: REGION_STATE_COLOR[state] ?? "#8a8f98", lines };
  }
  const score = clinical.scores.get(patient.id);
  const alarms = clinical.unacknowledgedOf("patient", patient.id);
  const allergies = (patient.allergies ?? []).filter((a) => a.criticality === "high");
  return {
    title: `${patient.name}, ${patient.age} · ${view.bed.label}`,
    accent: score ? BAND_COLOR[score.band] : NO_SCORE_COLOR,
    lines: [
      ...(allergies.length ? [{ text: `⚠ ${t("panel.allergies")}: ${allergies.map((a) => a.display).join(", ")}`, color: "#ff8a80" }] : []),
      { text: score ? `NEWS2 ${score.total}${score.complete ? "" : "?"} ${BAND_SYMBOL[score.band]} ${t(`band.${score.band}`)}` : `NEWS2 – ${t("band.none")}`, color: score ? BAND_COLOR[score.band] : undefined },
      { text: `${metricLabel("heart_rate")} ${valueText(view, "heart_rate")}  ${metricLabel("spo2")} ${valueText(view, "spo2")}  ${metricLabel("respiration_rate")} ${valueText(view, "respiration_rate")}` },
      { text: `${metricLabel("nibp")} ${valueText(view, "nibp_systolic")}/${valueText(view, "nibp_diastolic")}  ${metricLabel("body_temperature")} ${valueText(view, "body_temperature")}` },
      ...alarms.slice(0, 2).map((alarm) => ({ text: `⚠ ${t(`priority.${alarm.priority}`)}: ${alarmText(alarm, metricDisplay)}`, color: "#ff8a80" })),
      ...(patient.conditions.length ? [{ text: `${t("panel.conditions")}: ${patient.conditions.map((c) => c.display || c.code).join(", ")}`, color: "#c08af0" }] : []),
      { text: t("vr.select"), color: "#8d9aa8" },
    ],
  };
}

/** The region labels of a bed, as in-world text: the DOM label's rows, amber when out of range. */
function vrLabels(view: BedView): VrLabel[] {
  const labels: VrLabel[] = [];
  for (const [region, label] of view.regionLabels) {
    const lines = [...label.node.querySelectorAll<HTMLElement>(".vrow")].map((row) => ({
      text: [row.querySelector(".vname")?.textContent, row.querySelector(".vval")?.textContent, row.querySelector(".vunit")?.textContent].filter(Boolean).join(" "),
      color: row.classList.contains("artefact") ? "#9aa1a9" : row.classList.contains("abnormal") ? "#f0a020" : undefined,
    }));
    if (lines.length) labels.push({ region, anchor: label.object.position, lines });
  }
  return labels;
}

/** Redraws what VR shows of the bed the viewer stands at. */
function vrRedraw(): void {
  const view = selectedBedId ? ward?.beds.get(selectedBedId) : undefined;
  if (!vr.presenting || !view?.patient || !view.avatar) return;
  vr.drawCard(vrCard(view));
  vr.setLabels(view.avatar.root, vrLabels(view));
}

/**
 * The trigger, as a click: on a body region of this bed its detail opens (in the panel and in
 * the world), on another bed the viewer goes there, on the panel a region's detail closes back
 * to the patient, anywhere else the round moves to the next patient.
 */
function vrSelect(hit: THREE.Intersection | null, onPanel: boolean): void {
  const bedId = hit?.object.userData.bedId as string | undefined;
  const region = hit?.object.userData.region as string | undefined;
  if (onPanel) {
    if (selectedRegion) closeRegion();
  } else if (bedId && bedId === selectedBedId && region) {
    selectRegion(region);
  } else if (bedId && ward?.beds.get(bedId)?.patient) {
    select(bedId);
    const view = ward.beds.get(bedId)!;
    vr.standAt(view.group, vrCard(view));
  } else {
    vrNext();
    return;
  }
  vrRedraw();
}

/** In VR, the controller's trigger (pointing at nothing) moves to the next patient of the round. */
function vrNext(): void {
  const bedId = nextPatient();
  const view = bedId ? ward?.beds.get(bedId) : undefined;
  if (view?.patient) {
    vr.standAt(view.group, vrCard(view));
    vrRedraw();
  }
}
let ward: Ward | null = null;
let selectedBedId: string | null = null;

function resize(): void {
  const width = viewport.clientWidth;
  const height = viewport.clientHeight;
  renderer.setSize(width, height);
  labelRenderer.setSize(width, height);
  camera.aspect = width / Math.max(1, height);
  camera.updateProjectionMatrix();
  centreBesideThePanel();
  invalidate();
}

/** With the patient panel open over the right of the ward, the view's centre moves into the
 * part the panel leaves visible, so the bed being visited (which a flight puts at the centre)
 * is not under the panel. */
function centreBesideThePanel(): void {
  const width = viewport.clientWidth;
  const height = viewport.clientHeight;
  const covered = panel.hidden ? 0 : Math.min(width / 2, viewport.getBoundingClientRect().right - panel.getBoundingClientRect().left);
  if (covered > 0) camera.setViewOffset(width, height, covered / 2, 0, width, height);
  else camera.clearViewOffset();
  invalidate();
}
new ResizeObserver(resize).observe(viewport);
resize();

// ---- camera flights ---------------------------------------------------------------------------
interface Flight {
  fromTarget: THREE.Vector3;
  toTarget: THREE.Vector3;
  fromPosition: THREE.Vector3;
  toPosition: THREE.Vector3;
  start: number;
  duration: number;
}
let flight: Flight | null = null;

function flyTo(target: THREE.Vector3, position: THREE.Vector3, duration = 900): void {
  flight = {
    fromTarget: controls.target.clone(), toTarget: target,
    fromPosition: camera.position.clone(), toPosition: position,
    start: performance.now(), duration,
  };
}

function stepFlight(now: number): void {
  if (!flight) return;
  const t = Math.min(1, (now - flight.start) / flight.duration);
  const eased = t < 0.5 ? 4 * t * t * t : 1 - (-2 * t + 2) ** 3 / 2;
  invalidate();
  controls.target.lerpVectors(flight.fromTarget, flight.toTarget, eased);
  camera.position.lerpVectors(flight.fromPosition, flight.toPosition, eased);
  if (t >= 1) flight = null;
}

function overview(immediate: boolean): void {
  if (!ward) return;
  const centre = ward.bounds.getCenter(new THREE.Vector3());
  const size = ward.bounds.getSize(new THREE.Vector3());
  const radius = Math.max(4, Math.hypot(size.x, size.z) / 2);
  const fit = Math.min(camera.fov, THREE.MathUtils.radToDeg(2 * Math.atan(Math.tan(THREE.MathUtils.degToRad(camera.fov / 2)) * camera.aspect)));
  const distance = radius / Math.sin(THREE.MathUtils.degToRad(fit / 2)) * 0.62;
  const target = new THREE.Vector3(centre.x, 0, centre.z + size.z * 0.05);
  const position = target.clone().add(new THREE.Vector3(0, 1, 0.55).normalize().multiplyScalar(distance));
  if (immediate) {
    controls.target.copy(target);
    camera.position.copy(position);
    flight = null;
  } else {
    flyTo(target, position);
  }
}

function focusBed(bedId: string): boolean {
  const point = ward?.bedFocusPoint(bedId);
  if (!point) return false;
  select(bedId);
  flyTo(point.target, point.position);
  return true;
}

// ---- picking: click to fly, hover for conditions ---------------------------------------------
const raycaster = new THREE.Raycaster();
const pointer = new THREE.Vector2();

function pick(event: PointerEvent): THREE.Intersection | null {
  if (!ward) return null;
  const rect = renderer.domElement.getBoundingClientRect();
  pointer.set(((event.clientX - rect.left) / rect.width) * 2 - 1, -((event.clientY - rect.top) / rect.height) * 2 + 1);
  raycaster.setFromCamera(pointer, camera);
  return raycaster.intersectObjects(ward.pickables, false)[0] ?? null;
}

/** The centre of a bed's mesh, or of a region of its avatar, projected to client pixels. */
function screenPoint(bedId: string, region?: string): { x: number; y: number } | null {
  const target = ward?.pickables.find((object) =>
    object.userData.bedId === bedId && (region ? object.userData.region === region : object.userData.region === undefined));
  if (!target) return null;
  const centre = new THREE.Box3().setFromObject(target).getCenter(new THREE.Vector3()).project(camera);
  if (centre.z > 1) return null; // behind the camera
  const rect = renderer.domElement.getBoundingClientRect();
  return { x: rect.left + ((centre.x + 1) / 2) * rect.width, y: rect.top + ((1 - centre.y) / 2) * rect.height };
}

let downAt: { x: number; y: number } | null = null;
labelRenderer.domElement.addEventListener("pointerdown", (event) => {
  downAt = { x: event.clientX, y: event.clientY };
});
labelRenderer.domElement.addEventListener("pointerup", (event) => {
  // A click, not the end of an orbit drag.
  if (!downAt || Math.hypot(event.clientX - downAt.x, event.clientY - downAt.y) > 5) return;
  const hit = pick(event);
  const bedId = hit?.object.userData.bedId as string | undefined;
  const region = hit?.object.userData.region as string | undefined;
  // At the bed already: a click on the body opens that region's detail.
  if (bedId && bedId === selectedBedId && region) selectRegion(region);
  else if (bedId) focusBed(bedId);
});
labelRenderer.domElement.addEventListener("dblclick", () => {
  select(null);
  overview(false);
});

let hoverEvent: PointerEvent | null = null;
labelRenderer.domElement.addEventListener("pointermove", (event) => {
  hoverEvent = event;
});
labelRenderer.domElement.addEventListener("pointerleave", () => {
  hoverEvent = null;
  tooltip.hidden = true;
});

function updateHover(): void {
  if (!hoverEvent || !ward) return;
  const event = hoverEvent;
  hoverEvent = null;
  const hit = pick(event);
  if (!hit) {
    tooltip.hidden = true;
    return;
  }
  const view = ward.beds.get(hit.object.userData.bedId as string);
  const conditions = (hit.object.userData.conditions as string[] | undefined) ?? [];
  const region = hit.object.userData.region as string | undefined;
  const state = hit.object.userData.state as string | undefined;
  let text: string;
  const where = region ? `${regionName(region)}${state && state !== "normal" ? ` · ${t(`region.${state}`)}` : ""}` : "";
  if (conditions.length && region) text = `${conditions.join(", ")} (${where})`;
  else if (view?.patient) text = `${view.patient.name}, ${view.patient.age} · ${view.bed.label}${where ? ` · ${where}` : ""}`;
  else text = view ? `${view.bed.label} · ${t("panel.empty")}` : "";
  tooltip.textContent = text;
  tooltip.classList.toggle("condition", conditions.length > 0);
  tooltip.style.left = `${event.clientX + 14}px`;
  tooltip.style.top = `${event.clientY + 14}px`;
  tooltip.hidden = text === "";
}

// ---- side panel -----------------------------------------------------------------------------------
const escape = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
let selectedRegion: BodyRegion | null = null;

function select(bedId: string | null): void {
  if (bedId !== selectedBedId) {
    selectedRegion = null;
    Object.assign(draft, { text: "", acvpu: "", reviewed: true, status: "" });
    const patientId = bedId ? ward?.beds.get(bedId)?.patient?.id : undefined;
    if (patientId) void loadNotes(patientId);
  }
  selectedBedId = bedId;
  const view = bedId ? ward?.beds.get(bedId) : undefined;
  panel.hidden = !view;
  centreBesideThePanel();
  ecg.select(view?.patient?.id ?? null, ecg.showing);
  if (view?.patient) regionsWanted.add(view.patient.id);
  renderPanel();
  renderRegionDetail();
  overviewDirty = true;
}

let panelDirty = false;
// A re-render between a button's press and release would swallow the click: wait for the release.
let panelPressed = false;
panel.addEventListener("pointerdown", () => {
  panelPressed = true;
});
window.addEventListener("pointerup", () => {
  window.setTimeout(() => {
    panelPressed = false;
  }, 0);
});
function renderPanel(): void {
  // Never pull a control from under the user: an open ACVPU list or a checkbox being set.
  const active = document.activeElement?.id;
  if (panelPressed || active === "round-acvpu" || active === "round-reviewed") {
    panelDirty = true;
    return;
  }
  panelDirty = false;
  const view = selectedBedId ? ward?.beds.get(selectedBedId) : undefined;
  if (!view || !ward) return;
  // Keep what the user is typing: the panel is re-rendered while they type their name.
  const focused = document.activeElement?.id;
  // A keyboard user's place in the panel survives its re-render (values change every second).
  const focusedControl = panelBody.contains(document.activeElement)
    ? (document.activeElement as HTMLElement).dataset.testid
    : undefined;
  const patient = view.patient;
  const rows: string[] = [];
  rows.push(`<h2>${escape(patient ? `${patient.name}, ${patient.age}` : view.bed.label)}</h2>`);
  rows.push(`<div class="muted">${escape(`${view.room.name} · ${view.bed.label}`)}${patient ? ` · ${escape(t(`sex.${patient.sex}`) === `sex.${patient.sex}` ? patient.sex : t(`sex.${patient.sex}`))} · ${escape(patient.id)}` : ` · ${t("panel.empty")}`}</div>`);
  if (patient) {
    // Allergies first and loud: what must never be given is read before anything else.
    rows.push(allergiesHtml(patient));
    const score = clinical.scores.get(patient.id);
    rows.push(`<h3>${t("panel.news2")}</h3>`);
    if (score) {
      const color = BAND_COLOR[score.band] ?? NO_SCORE_COLOR;
      rows.push(`<div class="panel-score" data-testid="panel-news2" data-total="${score.total}" data-band="${score.band}">
        <span class="badge news2 band-${score.band}" style="--status:${color}">NEWS2 ${score.total}${score.complete ? "" : "?"} ${BAND_SYMBOL[score.band]}</span>
        <b>${escape(t(`band.${score.band}`))}</b>${score.complete ? "" : ` · <span class="warn">${t("score.incomplete")}</span>`}</div>`);
      rows.push(`<table class="breakdown" data-testid="news2-breakdown">`);
      for (const parameter of score.parameters) {
        const value = parameter.value ?? parameter.charted;
        const shown = parameter.parameter === "consciousness" && value != null ? "ACVPU".charAt(value) || String(value)
          : parameter.parameter === "air_or_oxygen" && value != null ? (value > 0 ? `O₂ ${value}` : "air") : value != null ? formatNumber(value, parameter.parameter === "temperature" ? 1 : 0) : "–";
        const sub = parameter.sub_score;
        rows.push(`<tr class="${parameter.status === "scored" ? "" : "unscored"} sub-${sub ?? "none"}"><td>${escape(t(`param.${parameter.parameter}`))}</td><td class="num">${escape(shown)}</td><td class="num sub">${sub ?? "–"}</td><td class="muted">${parameter.status === "scored" ? "" : escape(t(`status.${parameter.status}`))}</td></tr>`);
      }
      rows.push(`</table>`);
      rows.push(`<div class="muted" data-testid="news2-scale">${t("panel.scale")} ${score.scale}: ${escape(scaleReasonText(score))}</div>`);
      rows.push(`<div class="muted" data-testid="news2-response">${t("panel.response")}: ${escape(responseText(score))}</div>`);
    } else {
      rows.push(`<div class="muted">${t("band.none")}</div>`);
    }

    const alarms = clinical.alarmsOf("patient", patient.id);
    rows.push(`<h3>${t("panel.alarms")} (${alarms.length})</h3>`);
    rows.push(`<div class="user-line muted">${t("alarm.by")} <span data-testid="user-name">${escape(userName())}</span></div>`);
    if (!alarms.length) rows.push(`<div class="muted">${t("alarm.none")}</div>`);
    rows.push(`<ul class="alarms" data-testid="panel-alarms">`);
    for (const alarm of alarms) {
      const acked = alarm.acknowledged_at != null;
      rows.push(`<li class="alarm prio-${alarm.priority}${acked ? " acked" : ""}" data-testid="alarm-${alarm.id}" data-alarm-id="${alarm.id}">
        <span class="prio">${escape(t(`priority.${alarm.priority}`))}</span> <span class="alarm-text" title="${escape(alarm.message)}">${escape(alarmText(alarm, metricDisplay))}</span>
        <span class="muted">${new Date(alarm.raised_at).toLocaleTimeString()}${alarm.state === "escalated" ? ` · ${t("alarm.escalated")}` : ""}${acked ? ` · ${t("alarm.acked_by")} ${escape(alarm.acknowledged_by ?? "")}` : ""}</span>
        ${acked ? "" : `<button type="button" class="ack" data-ack="${alarm.id}" data-testid="ack-${alarm.id}">${t("alarm.ack")}</button>`}</li>`);
    }
    rows.push(`</ul><div id="ack-error" class="warn" hidden></div>`);

    const review = lastReview.get(patient.id);
    rows.push(`<h3>${t("round.title")}</h3>`);
    rows.push(`<div class="muted" data-testid="last-review">${review ? `${t("round.last_review")} ${new Date(review.at).toLocaleTimeString()} · ${escape(review.author)}` : t("round.never")}</div>`);
    rows.push(`<div class="round-form" data-testid="round-form">
      <textarea id="round-text" data-testid="round-text" rows="2" placeholder="${escape(t("round.placeholder"))}">${escape(draft.text)}</textarea>
      <label>${t("param.consciousness")} (ACVPU) <select id="round-acvpu" data-testid="round-acvpu">
        <option value="">–</option>${["A", "C", "V", "P", "U"].map((l) => `<option value="${l}"${draft.acvpu === l ? " selected" : ""}>${l} · ${escape(t(`acvpu.${l}`))}</option>`).join("")}
      </select></label>
      <label><input type="checkbox" id="round-reviewed" data-testid="round-reviewed"${draft.reviewed ? " checked" : ""}> ${t("round.reviewed")}</label>
      <button type="button" id="round-save" data-testid="round-save">${t("round.save")}</button>
      <div id="round-status" class="muted" data-testid="round-status">${escape(draft.status)}</div>
    </div>`);
    const notes = notesByPatient.get(patient.id) ?? [];
    if (notes.length) {
      rows.push(`<ul class="notes" data-testid="round-notes">${notes.slice(0, 5).map((n) => `<li><span class="muted">${new Date(n.at).toLocaleTimeString()} · ${escape(n.author)}${n.acvpu ? ` · ACVPU ${n.acvpu}` : ""}${n.reviewed ? ` · ${t("round.reviewed")}` : ""}</span><br>${escape(n.text)}</li>`).join("")}</ul>`);
    }

    if (patient.conditions?.length) {
      rows.push(`<h3>${t("panel.conditions")}</h3><ul data-testid="panel-conditions">${patient.conditions.map((c) => `<li data-code="${escape(c.code)}">${escape(c.display || c.code)} <span class="muted">${escape((c.regions ?? []).map(regionName).join(", "))}</span></li>`).join("")}</ul>`);
    }
    rows.push(medicationsHtml(patient));
    rows.push(labsHtml(patient));
    // Regions not normal first, as chips; a click opens the detail.
    const avatar = view.avatar;
    if (avatar) {
      const order = { critical: 0, abnormal: 1, condition: 2, normal: 3 } as Record<string, number>;
      const regions = [...avatar.states.entries()]
        .filter(([region, state]) => state !== "normal" || view.regionLabels.has(region))
        .sort((x, y) => (order[x[1]] ?? 4) - (order[y[1]] ?? 4));
      rows.push(`<h3>${t("panel.regions")}</h3><div class="chips">${regions.map(([region, state]) =>
        `<button type="button" class="chip region-${state}${region === selectedRegion ? " selected" : ""}" data-region="${region}" data-testid="region-chip-${region}">${escape(regionName(region))}${state === "normal" ? "" : ` · ${escape(t(`region.${state}`))}`}</button>`).join("")}</div>`);
    }
    rows.push(`<h3>${t("panel.values")}</h3><table>`);
    const items = [...view.latest.values()].sort((a, b) => a.metric.localeCompare(b.metric));
    for (const item of items) {
      const metric = ward.metrics.get(item.metric);
      rows.push(`<tr class="${item.artefact ? "artefact" : ""}"><td title="${escape(metric?.display ?? item.metric)}">${escape(tOr(`metric.${item.metric}`, metric?.display ?? item.metric))}</td><td class="num">${formatNumber(item.value, metric?.decimals)} ${escape(unitText(item.unit || metric?.unit))}</td><td>${item.artefact ? "artefact" : ""}</td></tr>`);
    }
    rows.push(`</table>`);
  }
  panelBody.innerHTML = rows.join("");
  if (focused === "user-name" || focused === "round-text") {
    const input = document.getElementById(focused) as HTMLInputElement | null;
    input?.focus();
    input?.setSelectionRange(input.value.length, input.value.length);
  } else if (focusedControl) {
    panelBody.querySelector<HTMLElement>(`[data-testid="${CSS.escape(focusedControl)}"]`)?.focus();
  }
}

const notesByPatient = new Map<string, RoundNote[]>();

/** Keeps a note (saved here, or written by another clinician and streamed), once, newest first. */
function addNote(note: RoundNote): void {
  const held = (notesByPatient.get(note.patient_id) ?? []).filter((n) => n.id !== note.id);
  notesByPatient.set(note.patient_id, [note, ...held].sort((a, b) => b.at - a.at || b.id - a.id));
  if (note.reviewed) {
    const last = lastReview.get(note.patient_id);
    if (!last || last.at <= note.at) lastReview.set(note.patient_id, { at: note.at, author: note.author });
  }
  overviewDirty = true;
  const selected = selectedBedId ? ward?.beds.get(selectedBedId)?.patient?.id : undefined;
  if (selected === note.patient_id) panelDirty = true;
}
/** What the clinician has typed but not saved; kept across the panel's re-renders. */
const draft = { text: "", acvpu: "", reviewed: true, status: "" };

async function loadNotes(patientId: string): Promise<void> {
  try {
    const response = await authFetch(`/api/v1/rounds/notes?patient=${encodeURIComponent(patientId)}&limit=20`);
    if (response.ok) {
      notesByPatient.set(patientId, (await response.json()) as RoundNote[]);
      panelDirty = true;
    }
  } catch {
    // Shown as no notes; the next selection tries again.
  }
}

async function saveRoundNote(): Promise<void> {
  const patientId = selectedBedId ? ward?.beds.get(selectedBedId)?.patient?.id : undefined;
  if (!patientId) return;
  draft.status = "…";
  const response = await authFetch("/api/v1/rounds/notes", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ patient_id: patientId, text: draft.text, acvpu: draft.acvpu || null, reviewed: draft.reviewed }),
  }).catch((failure) => new Response(String(failure), { status: 599 }));
  if (response.status === 201) {
    addNote((await response.json()) as RoundNote);
    Object.assign(draft, { text: "", acvpu: "", reviewed: true, status: t("round.saved") });
    overviewDirty = true;
  } else {
    draft.status = `${t("round.failed")}: ${await response.text()}`;
  }
  panelDirty = true;
  renderPanel();
}

/** The signed-in user: the server records notes, acknowledgments and presence in this name. */
function userName(): string {
  return currentUser()?.name ?? "";
}

panelBody.addEventListener("input", (event) => {
  const target = event.target as HTMLInputElement;
  if (target.id === "round-text") draft.text = target.value;
  if (target.id === "round-acvpu") draft.acvpu = target.value;
  if (target.id === "round-reviewed") draft.reviewed = target.checked;
});

panelBody.addEventListener("click", async (event) => {
  const target = event.target as HTMLElement;
  const region = target.closest<HTMLElement>("[data-region]")?.dataset.region;
  if (region) {
    selectRegion(region);
    return;
  }
  if (target.id === "round-save") {
    await saveRoundNote();
    return;
  }
  const ackId = target.closest<HTMLElement>("[data-ack]")?.dataset.ack;
  if (!ackId) return;
  const by = userName();
  const error = document.getElementById("ack-error");
  (target as HTMLButtonElement).disabled = true;
  try {
    const response = await authFetch(`/api/v1/alarms/${encodeURIComponent(ackId)}/acknowledge`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({}),
    });
    if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
    // The stream brings the acknowledged event too; apply the answer now so the list changes at once.
    const alarm = (await response.json()) as AlarmInfo;
    clinical.applyAlarmEvents([{ at: Date.now(), transition: "acknowledged", by, alarm }]);
    alarmsChanged(`${alarm.subject.kind}/${alarm.subject.id}`);
  } catch (failure) {
    if (error) {
      error.hidden = false;
      error.textContent = `${t("alarm.failed")}: ${String(failure)}`;
    }
    (target as HTMLButtonElement).disabled = false;
  }
});

$("panel-close").addEventListener("click", () => {
  select(null);
  overview(false);
});

// ---- keyboard: the whole ward without a mouse ---------------------------------------------------
// Arrow keys pan the view (OrbitControls); Tab reaches the overview rows (Enter or Space visits
// the bed); N visits the next patient of the worklist; Escape closes the region detail, then
// the patient panel.
controls.listenToKeyEvents(window);
window.addEventListener("keydown", (event) => {
  const target = event.target as HTMLElement | null;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
  if (event.key === "Escape") {
    if (selectedRegion) closeRegion();
    else if (selectedBedId) {
      select(null);
      overview(false);
    }
  } else if (event.key === "n" || event.key === "N") {
    nextPatient();
  }
});

// ---- region detail: values, a real chart of the last hours, the live strip ----------------------
const TREND_SPAN_MS = 4 * 3_600_000;
let regionRequest = 0;

function selectRegion(key: string): boolean {
  const region = resolveRegion(key);
  const view = selectedBedId ? ward?.beds.get(selectedBedId) : undefined;
  if (!region || !view?.patient) return false;
  selectedRegion = region;
  // The strip follows the region: the plethysmogram at the finger, the ECG elsewhere.
  ecg.select(view.patient.id, region.startsWith("finger") || region.startsWith("hand") ? "pleth" : "ecg");
  renderPanel();
  renderRegionDetail();
  return true;
}

/** Back from a region's detail to the patient. */
function closeRegion(): void {
  selectedRegion = null;
  renderPanel();
  void renderRegionDetail();
}

/** Metrics shown at a region: those whose latest value sits there. */
function metricsAt(view: BedView, region: BodyRegion): string[] {
  const metrics: string[] = [];
  for (const item of view.latest.values()) {
    const at = resolveRegion(item.region) ?? resolveRegion(ward?.metrics.get(item.metric)?.region);
    if (at === region) metrics.push(item.metric);
  }
  return metrics.sort();
}

async function renderRegionDetail(): Promise<void> {
  const view = selectedBedId ? ward?.beds.get(selectedBedId) : undefined;
  const region = selectedRegion;
  if (!view?.patient || !region || !ward) {
    regionDetail.hidden = true;
    regionDetail.replaceChildren();
    return;
  }
  const request = ++regionRequest;
  const patientId = view.patient.id;
  const state = view.avatar?.states.get(region) ?? "normal";
  const reasons = (view.avatar?.regions.get(region)?.userData.reasons ?? []) as RegionStatusInfo["reasons"];
  const metrics = metricsAt(view, region);
  regionDetail.hidden = false;
  regionDetail.dataset.region = region;
  const head = document.createElement("div");
  head.innerHTML = `<h3>${t("panel.region")}: ${escape(regionName(region))} <span class="chip region-${state}">${escape(t(`region.${state}`))}</span></h3>
    <ul class="reasons">${reasons.map((r) => `<li title="${escape(r.why ?? "")}">${escape(r.kind === "condition" ? r.display ?? r.code ?? "" : `${r.metric ? metricLabel(r.metric, ward!.metrics.get(r.metric)?.display) : ""} ${r.value != null ? formatNumber(r.value, ward!.metrics.get(r.metric ?? "")?.decimals ?? 1) : ""} ${r.state ? tOr(`region.${r.state}`, r.state) : ""}`)}</li>`).join("")}</ul>
    ${relatedHtml(view.patient, region)}`;
  const to = Date.now();
  const from = to - TREND_SPAN_MS;
  const charts = await Promise.all(metrics.map(async (metricKey) => {
    const metric = ward!.metrics.get(metricKey);
    const box = document.createElement("div");
    box.className = "trend";
    box.dataset.testid = `trend-${metricKey}`;
    const latest = view.latest.get(metricKey);
    box.innerHTML = `<div class="trend-title"><b>${escape(metricLabel(metricKey, metric?.display))}</b> ${latest ? `${formatNumber(latest.value, metric?.decimals)} ${escape(unitText(latest.unit || metric?.unit))}` : ""} <span class="muted">${t("panel.trend")}</span></div>`;
    try {
      const response = await authFetch(`/api/v1/patients/${encodeURIComponent(patientId)}/history?metric=${encodeURIComponent(metricKey)}&from=${from}&to=${to}&limit=5000`);
      if (!response.ok) throw new Error(String(response.status));
      const body = (await response.json()) as { points: ChartPoint[] };
      if (body.points.length) box.append(timeSeriesChart(body.points, { from, to, normal: metric?.normal, decimals: metric?.decimals }));
      else box.append(Object.assign(document.createElement("div"), { className: "muted", textContent: t("panel.no_history") }));
    } catch (failure) {
      box.append(Object.assign(document.createElement("div"), { className: "warn", textContent: String(failure) }));
    }
    return box;
  }));
  if (request !== regionRequest) return;
  regionDetail.replaceChildren(head, ...charts);
}

// ---- region colours: the twin's judgement, fetched for patients whose data changed ------------
const regionsWanted = new Set<string>();
let regionFetchBusy = false;
async function refreshOneRegion(): Promise<void> {
  if (regionFetchBusy || !ward || regionsWanted.size === 0) return;
  // The selected patient first; then any.
  const selectedPatient = selectedBedId ? ward.beds.get(selectedBedId)?.patient?.id : undefined;
  const patientId = selectedPatient && regionsWanted.has(selectedPatient) ? selectedPatient : regionsWanted.values().next().value!;
  regionsWanted.delete(patientId);
  regionFetchBusy = true;
  try {
    const response = await authFetch(`/api/v1/patients/${encodeURIComponent(patientId)}/regions`);
    if (response.ok) {
      const regions = (await response.json()) as RegionStatusInfo[];
      if (ward?.applyRegions(patientId, regions) && patientId === selectedPatient) panelDirty = true;
      hooks.regionRefreshes += 1;
    }
  } catch {
    regionsWanted.add(patientId);
  } finally {
    regionFetchBusy = false;
  }
}
// 40 beds: every patient with new data is refreshed within a few seconds, at most ~7 requests a second.
window.setInterval(refreshOneRegion, 150);

// ---- the ward overview: a central-station list beside the 3D view -------------------------------
type SortMode = "bed" | "acuity";
let sortMode: SortMode = "bed";
let overviewDirty = true;
let worklistIndex = -1;

interface OverviewRow {
  row: HTMLTableRowElement;
  cells: HTMLTableCellElement[];
  texts: string[];
}
const overviewByBed = new Map<string, OverviewRow>();
const OVERVIEW_METRICS = ["heart_rate", "spo2", "respiration_rate", "nibp", "body_temperature"];

/** When each patient was last reviewed on a round (`GET /rounds/reviews`), epoch ms. */
const lastReview = new Map<string, { at: number; author: string }>();
async function loadReviews(): Promise<void> {
  try {
    const response = await authFetch("/api/v1/rounds/reviews");
    if (!response.ok) return;
    lastReview.clear();
    for (const review of (await response.json()) as Array<{ patient_id: string; at: number; author: string }>) {
      lastReview.set(review.patient_id, { at: review.at, author: review.author });
    }
    overviewDirty = true;
  } catch {
    // The worklist still orders by band and score; the review time is the last key.
  }
}

/** Acuity: NEWS2 band, then score, then the longest since last review (never first), then bed order. */
function orderedBeds(mode: SortMode = sortMode): BedView[] {
  const views = [...(ward?.beds.values() ?? [])];
  if (mode === "bed") return views;
  return views
    .filter((v) => v.patient)
    .map((v, index) => ({ v, index }))
    .sort((a, b) => {
      const sa = clinical.scores.get(a.v.patient!.id);
      const sb = clinical.scores.get(b.v.patient!.id);
      return bandRank(sb) - bandRank(sa)
        || (sb?.total ?? -1) - (sa?.total ?? -1)
        || (lastReview.get(a.v.patient!.id)?.at ?? 0) - (lastReview.get(b.v.patient!.id)?.at ?? 0)
        || priorityRank(clinical.unacknowledgedOf("patient", b.v.patient!.id)[0]?.priority) - priorityRank(clinical.unacknowledgedOf("patient", a.v.patient!.id)[0]?.priority)
        || a.index - b.index;
    })
    .map((x) => x.v);
}

/**
 * A round's worklist is fixed when the round starts (the first "next"), so a score that moves
 * during the round does not make anyone skipped or seen twice; re-sorting starts a new round.
 */
let roundList: string[] | null = null;
/** When the round started, and each patient's NEWS2 then: the summary's "what changed". */
let roundStart: { at: number; scores: Map<string, { total: number; band: string }> } | null = null;
const roundSeen = new Set<string>();
function nextPatient(): string | null {
  if (!roundList) {
    roundList = orderedBeds("acuity").map((v) => v.bed.id);
    worklistIndex = -1;
    roundStart = { at: Date.now(), scores: new Map([...clinical.scores.values()].map((s) => [s.patient_id, { total: s.total, band: s.band }])) };
    roundSeen.clear();
    $("summary").hidden = false;
  }
  if (!roundList.length) return null;
  worklistIndex = (worklistIndex + 1) % roundList.length;
  const bedId = roundList[worklistIndex];
  roundSeen.add(bedId);
  focusBed(bedId);
  return bedId;
}

/** The end of a round: who was seen and by whom, what changed in NEWS2, what alarms are open. */
function showRoundSummary(): void {
  const node = $("round-summary");
  if (!roundList || !roundStart || !ward) return;
  const since = roundStart.at;
  const rows: string[] = [];
  let seen = 0;
  for (const bedId of roundList) {
    const view = ward.beds.get(bedId);
    const patient = view?.patient;
    if (!view || !patient) continue;
    if (roundSeen.has(bedId)) seen += 1;
    const notes = (notesByPatient.get(patient.id) ?? []).filter((n) => n.at >= since);
    const before = roundStart.scores.get(patient.id);
    const now = clinical.scores.get(patient.id);
    const change = before && now && (before.total !== now.total || before.band !== now.band)
      ? `${before.total} → ${now.total} ${t(`band.${now.band}`)}` : now ? `${now.total} ${t(`band.${now.band}`)}` : "–";
    const open = clinical.unacknowledgedOf("patient", patient.id).length;
    rows.push(`<tr data-testid="summary-${patient.id}" class="${roundSeen.has(bedId) ? "" : "unseen"}"><td>${escape(view.bed.label)}</td><td>${escape(patient.name)}</td>
      <td>${roundSeen.has(bedId) ? "✓" : "–"}</td><td>${escape([...new Set(notes.map((n) => n.author))].join(", "))}${notes.some((n) => n.acvpu) ? ` · ACVPU ${notes.find((n) => n.acvpu)!.acvpu}` : ""}</td>
      <td>${escape(change)}</td><td class="num">${open || ""}</td></tr>`);
  }
  node.innerHTML = `<button type="button" class="panel-close" data-close>×</button>
    <h2>${t("round.summary")}</h2>
    <div class="muted" data-testid="summary-counts" data-seen="${seen}" data-total="${roundList.length}">${t("round.seen")} ${seen} / ${roundList.length} · ${t("round.started")} ${new Date(since).toLocaleTimeString()}</div>
    <table><thead><tr><th>${t("overview.bed")}</th><th>${t("overview.patient")}</th><th>${t("round.seen")}</th><th>${t("round.by")}</th><th>NEWS2</th><th>${t("round.open_alarms")}</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
  node.hidden = false;
}
$("summary").addEventListener("click", showRoundSummary);
$("round-summary").addEventListener("click", (event) => {
  if ((event.target as HTMLElement).closest("[data-close]")) $("round-summary").hidden = true;
});

function buildOverview(): void {
  overviewByBed.clear();
  overviewRows.replaceChildren();
  for (const view of ward?.beds.values() ?? []) {
    const row = document.createElement("tr");
    row.dataset.testid = `overview-row-${view.bed.id}`;
    row.dataset.bed = view.bed.id;
    if (view.patient) row.dataset.patient = view.patient.id;
    const cells: HTMLTableCellElement[] = [];
    for (let i = 0; i < 9; i++) {
      const cell = document.createElement("td");
      if (i >= 2 && i <= 6) cell.className = "num";
      cells.push(cell);
      row.append(cell);
    }
    cells[0].textContent = view.bed.label;
    cells[1].textContent = view.patient ? `${view.patient.name}, ${view.patient.age}` : t("panel.empty");
    cells[7].className = "news2-cell";
    cells[8].className = "alarm-cell";
    row.addEventListener("click", () => focusBed(view.bed.id));
    row.tabIndex = 0;
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        focusBed(view.bed.id);
      }
    });
    overviewByBed.set(view.bed.id, { row, cells, texts: cells.map((c) => c.textContent ?? "") });
  }
  overviewDirty = true;
}

function setCell(entry: OverviewRow, index: number, text: string): void {
  if (entry.texts[index] === text) return;
  entry.texts[index] = text;
  entry.cells[index].textContent = text;
}

function renderOverview(): void {
  overviewDirty = false;
  if (!ward) return;
  sortButton.textContent = t(sortMode === "bed" ? "overview.sort.acuity" : "overview.sort.bed");
  const order = orderedBeds();
  const shown = new Set(order.map((v) => v.bed.id));
  for (const [bedId, entry] of overviewByBed) entry.row.hidden = !shown.has(bedId);
  order.forEach((view, index) => {
    const entry = overviewByBed.get(view.bed.id)!;
    if (overviewRows.children[index] !== entry.row) overviewRows.insertBefore(entry.row, overviewRows.children[index] ?? null);
    entry.row.classList.toggle("selected", view.bed.id === selectedBedId);
    if (!view.patient) return;
    for (let i = 0; i < OVERVIEW_METRICS.length; i++) {
      const key = OVERVIEW_METRICS[i];
      let text = "–";
      if (key === "nibp") {
        const sys = view.latest.get("nibp_systolic");
        const dia = view.latest.get("nibp_diastolic");
        if (sys) text = `${formatNumber(sys.value, 0)}/${dia ? formatNumber(dia.value, 0) : "–"}`;
      } else {
        const item = view.latest.get(key);
        if (item) text = `${formatNumber(item.value, ward!.metrics.get(key)?.decimals)}${item.artefact ? "?" : ""}`;
      }
      setCell(entry, 2 + i, text);
    }
    const score = clinical.scores.get(view.patient.id);
    const scoreText = score ? `${score.total}${score.complete ? "" : "?"} ${BAND_SYMBOL[score.band]} ${t(`band.${score.band}`)}` : "–";
    if (entry.texts[7] !== scoreText) {
      entry.texts[7] = scoreText;
      entry.cells[7].replaceChildren();
      const badge = document.createElement("span");
      // Striped when an input is missing or stale: the number is then a lower bound.
      badge.className = `badge news2 ${score ? `band-${score.band}` : "none"}${score && !score.complete ? " incomplete" : ""}`;
      badge.title = score && !score.complete ? t("score.incomplete") : "";
      badge.style.setProperty("--status", score ? BAND_COLOR[score.band] : NO_SCORE_COLOR);
      badge.textContent = scoreText;
      badge.dataset.total = score ? String(score.total) : "";
      badge.dataset.band = score?.band ?? "";
      entry.cells[7].append(badge);
    }
    const alarms = clinical.alarmsOf("patient", view.patient.id);
    const alarmKey = alarms.map((a) => `${a.id}:${a.priority}:${a.acknowledged_at ?? ""}`).join(",") + language();
    if (entry.texts[8] !== alarmKey) {
      entry.texts[8] = alarmKey;
      let chip = entry.cells[8].firstElementChild as HTMLElement | null;
      if (!chip) {
        chip = document.createElement("span");
        entry.cells[8].append(chip);
      }
      paintAlarmChip(chip, alarms);
    }
  });
}

sortButton.addEventListener("click", () => {
  sortMode = sortMode === "bed" ? "acuity" : "bed";
  roundList = null;
  $("summary").hidden = true;
  overviewDirty = true;
});
$("next").addEventListener("click", () => nextPatient());

function alarmsChanged(subject: string): void {
  const [kind, id] = subject.split("/");
  if (kind === "patient") {
    ward?.applyPatientAlarms(id, clinical.alarmsOf("patient", id));
    if (selectedBedId && ward?.bedByPatient.get(id)?.bed.id === selectedBedId) panelDirty = true;
  } else if (kind === "room") {
    ward?.applyRoomAlarms(id, clinical.alarmsOf("room", id));
  }
  overviewDirty = true;
}

// ---- presence: the other clinicians in the ward -------------------------------------------------
interface Other {
  item: PresenceItem;
  marker: THREE.Group;
  label: CSS2DObject;
}
const others = new Map<string, Other>();
const presenceMarker = new THREE.CapsuleGeometry(0.18, 1.2, 2, 8);
const presenceMaterial = new THREE.MeshLambertMaterial({ color: 0x4fc3f7 });

function applyPresence(items: PresenceItem[]): void {
  for (const item of items) {
    let other = others.get(item.id);
    if (item.gone) {
      if (other) {
        other.marker.removeFromParent();
        other.label.element.remove();
        others.delete(item.id);
      }
      continue;
    }
    if (!other) {
      const marker = new THREE.Group();
      const body = new THREE.Mesh(presenceMarker, presenceMaterial);
      body.position.y = 0.8;
      marker.add(body);
      const node = document.createElement("div");
      node.className = "presence-label";
      node.dataset.testid = `presence-${item.id}`;
      const label = new CSS2DObject(node);
      label.position.y = 1.75;
      marker.add(label);
      scene.add(marker);
      other = { item, marker, label };
      others.set(item.id, other);
    }
    other.item = item;
    other.label.element.textContent = item.name ?? "";
    // Where they stand, on the floor; the marker faces where they look.
    const [x, , z] = item.position ?? [0, 0, 0];
    other.marker.position.set(x, 0, z);
    if (item.target) other.marker.lookAt(item.target[0], 0, item.target[2]);
    other.marker.visible = item.position != null;
  }
  // The overview shows who is at which bed.
  for (const [bedId, entry] of overviewByBed) {
    const names = [...others.values()].filter((o) => o.item.bed_id === bedId).map((o) => o.item.name ?? "");
    let tag = entry.cells[0].querySelector<HTMLElement>(".presence-tag");
    if (!names.length) {
      tag?.remove();
      continue;
    }
    if (!tag) {
      tag = document.createElement("span");
      tag.className = "presence-tag";
      tag.dataset.testid = `presence-at-${bedId}`;
      entry.cells[0].append(tag);
    }
    tag.textContent = `● ${names.join(", ")}`;
    tag.title = names.join(", ");
  }
  invalidate();
}

/** Tells the others where this viewer is: on a change, at most once a second. */
let lastPresence = "";
let lastPresenceAt = 0;
function sendPresence(now: number): void {
  const name = userName();
  if (!name || now - lastPresenceAt < 1000) return;
  const round = (v: THREE.Vector3) => [v.x, v.y, v.z].map((n) => Math.round(n * 10) / 10);
  const message = JSON.stringify({
    type: "presence", bed_id: selectedBedId,
    position: round(camera.getWorldPosition(new THREE.Vector3())), target: round(controls.target),
  });
  if (message === lastPresence) return;
  if (stream.send(message)) {
    lastPresence = message;
    lastPresenceAt = now;
  }
}

// ---- language -----------------------------------------------------------------------------------
$("language").addEventListener("click", () => setLanguage(language() === "en" ? "zh" : "en"));
onLanguageChange(() => {
  ward?.relabel();
  for (const entry of overviewByBed.values()) entry.texts = entry.texts.map(() => "");
  for (const [bedId, entry] of overviewByBed) {
    const view = ward?.beds.get(bedId);
    entry.cells[0].textContent = view?.bed.label ?? "";
    entry.cells[1].textContent = view?.patient ? `${view.patient.name}, ${view.patient.age}` : t("panel.empty");
    entry.texts[0] = entry.cells[0].textContent;
    entry.texts[1] = entry.cells[1].textContent ?? "";
  }
  ecg.reset();
  overviewDirty = true;
  renderPanel();
  renderRegionDetail();
  invalidate();
});

// ---- the stream ---------------------------------------------------------------------------------
function applySnapshot(snapshot: SnapshotMessage): void {
  hooks.snapshots += 1;
  const previousSelection = selectedBedId;
  const firstSnapshot = ward === null;
  ward?.dispose();
  ward = new Ward(snapshot, kit, labelRenderer.domElement);
  scene.add(ward.root);
  hooks.beds = ward.bedCount;
  hooks.patients = ward.patients.size;
  clinical.reset(snapshot.scores ?? [], snapshot.alarms ?? []);
  for (const score of clinical.scores.values()) ward.applyScore(score.patient_id, score);
  for (const patient of ward.patients.values()) {
    ward.applyPatientAlarms(patient.id, clinical.alarmsOf("patient", patient.id));
    regionsWanted.add(patient.id);
  }
  for (const room of ward.rooms.keys()) ward.applyRoomAlarms(room, clinical.alarmsOf("room", room));
  buildOverview();
  applyPresence([...others.keys()].map((id) => ({ id, gone: true })));
  lastPresence = "";
  void loadReviews();
  invalidate();
  for (const item of snapshot.values ?? []) recordValue(item);
  if (firstSnapshot) overview(true);
  select(previousSelection && ward.beds.has(previousSelection) ? previousSelection : null);
  ecg.reset();
  // Ready once the snapshot has been drawn, not merely parsed.
  requestAnimationFrame(() => requestAnimationFrame(() => {
    hooks.ready = true;
  }));
}

/**
 * The record of a patient changed (or their bed): the panel, the region detail and the avatar
 * follow at once. A patient who moved, arrived or left needs the ward rebuilt: a fresh
 * snapshot, as after a reconnect.
 */
function applyPatients(items: Array<PatientInfo | { id: string; gone: true }>): void {
  if (!ward) return;
  let rebuild = false;
  for (const item of items) {
    hooks.patientUpdates += 1;
    if ("gone" in item) {
      if (ward.patients.has(item.id)) rebuild = true;
      continue;
    }
    if (!ward.updatePatient(item)) {
      // Not in a bed of this ward before and not now: nothing here shows them.
      if (ward.patients.has(item.id) || (item.bed_id && ward.beds.has(item.bed_id))) rebuild = true;
      continue;
    }
    regionsWanted.add(item.id);
    if (selectedBedId && ward.beds.get(selectedBedId)?.patient?.id === item.id) {
      panelDirty = true;
      if (selectedRegion) void renderRegionDetail();
    }
  }
  if (rebuild) stream.resubscribe();
}

function recordValue(item: ValueItem): void {
  const subject = item.patient_id ?? item.room_id ?? item.bed_id ?? "unknown";
  hooks.lastValues[`${subject}/${item.metric}`] = item.value;
}

const stream = new LiveStream(() => streamUrl(window.location, accessToken()), {
  onMessage(message: ServerMessage) {
    switch (message.type) {
      case "snapshot":
        applySnapshot(message);
        stream.markHealthy();
        break;
      case "values":
        for (const item of message.items ?? []) {
          recordValue(item);
          hooks.valueUpdates += 1;
          ward?.applyValue(item);
          if (item.patient_id) regionsWanted.add(item.patient_id);
          if (selectedBedId && item.bed_id === selectedBedId) panelDirty = true;
          else if (selectedBedId && item.patient_id && ward?.bedByPatient.get(item.patient_id)?.bed.id === selectedBedId) panelDirty = true;
        }
        overviewDirty = true;
        break;
      case "scores":
        for (const patientId of clinical.applyScores(message.items ?? [])) {
          ward?.applyScore(patientId, clinical.scores.get(patientId) ?? null);
          regionsWanted.add(patientId);
          if (selectedBedId && ward?.bedByPatient.get(patientId)?.bed.id === selectedBedId) panelDirty = true;
        }
        overviewDirty = true;
        break;
      case "alarms":
        for (const subject of clinical.applyAlarmEvents(message.items ?? [])) alarmsChanged(subject);
        break;
      case "status":
        ward?.applyStatus(message.items ?? []);
        panelDirty = panelDirty || selectedBedId !== null;
        break;
      case "waveform":
        ecg.push(message.patient_id, message.metric, message.start, message.rate_hz, message.samples ?? []);
        break;
      case "presence":
        applyPresence(message.items ?? []);
        break;
      case "patient":
        applyPatients(message.items ?? []);
        break;
      case "notes":
        for (const note of message.items ?? []) addNote(note);
        break;
      case "error":
        console.warn(`metaward: the server refused a message: ${message.message}`);
        break;
      case "lagged":
        hooks.skippedWaveformChunks += message.skipped_waveform_chunks ?? 0;
        lagNode.textContent = `lagging: ${hooks.skippedWaveformChunks} waveform chunks skipped`;
        lagNode.hidden = false;
        break;
      default:
        break;
    }
  },
  onState(state: ConnectionState) {
    let text: string;
    switch (state.kind) {
      case "open":
        text = t("connection.live");
        break;
      case "connecting":
        text = state.attempt > 1 ? `reconnecting (attempt ${state.attempt})` : t("connection.connecting");
        break;
      case "waiting":
        text = `disconnected · retry in ${(state.retryInMs / 1000).toFixed(1)} s`;
        // A refused upgrade looks like any lost connection: ask whether the session ended.
        void sessionAlive().then((alive) => {
          if (!alive && !signingIn) signedOut();
        });
        break;
    }
    hooks.connection = state.kind;
    connectionNode.textContent = text;
    connectionNode.className = `connection ${state.kind}`;
  },
});
// Nothing is shown before someone signs in; a session that cannot be renewed signs out.
let signingIn = true;
function signedOut(): void {
  signingIn = true;
  document.body.classList.add("signed-out");
  stream.stop();
  hooks.ready = false;
  userNode.textContent = "";
  logoutNode.hidden = true;
  void signIn(signedOut).then(started);
}
function started(): void {
  signingIn = false;
  document.body.classList.remove("signed-out");
  const user = currentUser();
  userNode.textContent = user ? `${user.name} · ${user.role}` : "";
  logoutNode.hidden = false;
  stream.start();
}
logoutNode.addEventListener("click", () => {
  signingIn = true;
  void signOut().then(signedOut);
});
void signIn(signedOut).then(started);

// ---- the frame loop -----------------------------------------------------------------------------
let lastVisibilityCheck = 0;
let lastPanelRender = 0;
let lastOverviewRender = 0;
let lastCardDraw = 0;
function frame(now: number): void {
  sendPresence(now);
  if (overviewDirty && now - lastOverviewRender > 1000) {
    lastOverviewRender = now;
    renderOverview();
  }
  stepFlight(now);
  controls.update();
  updateHover();
  if (ward && now - lastVisibilityCheck > 200) {
    lastVisibilityCheck = now;
    if (ward.updateLabelVisibility(camera, selectedBedId, LABEL_DISTANCE)) invalidate();
  }
  if (panelDirty && now - lastPanelRender > 500) {
    lastPanelRender = now;
    renderPanel();
  }
  if (ward?.dirty) {
    ward.dirty = false;
    needsRender = true;
  }
  if (vr.presenting) {
    vr.frames += 1;
    needsRender = true;
    if (now - lastCardDraw > 1000 && selectedBedId) {
      lastCardDraw = now;
      vrRedraw();
    }
  }
  if (needsRender) {
    needsRender = false;
    renderer.render(scene, camera);
    labelRenderer.render(scene, camera);
  }
  if (!panel.hidden) ecg.draw();
}
renderer.setAnimationLoop(frame);
