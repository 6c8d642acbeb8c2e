//! The ward page: wires the live stream to the 3D ward, the camera, the side panel and the test
//! hooks (window.__metaward). Rendering happens only on requestAnimationFrame.

import * as THREE from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
import { CSS2DRenderer } from "three/examples/jsm/renderers/CSS2DRenderer.js";
import "./style.css";
import { EcgStrip } from "./ecg";
import { formatNumber, shortName, statusWord, unitText } from "./format";
import type { ServerMessage, SnapshotMessage, ValueItem } from "./protocol";
import { LiveStream, streamUrl, type ConnectionState } from "./stream";
import { SharedKit, Ward } from "./ward";

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
const tooltip = $("tooltip");
const panel = $("panel");
const panelBody = $("panel-body");
const ecg = new EcgStrip($<HTMLCanvasElement>("ecg"), $("ecg-caption"));

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
let ward: Ward | null = null;
let selectedBedId: string | null = null;

function resize(): void {
  const width = viewport.clientWidth;
  const height = viewport.clientHeight;
  renderer.setSize(width, height);
  labelRenderer.setSize(width, height);
  camera.aspect = width / Math.max(1, height);
  camera.updateProjectionMatrix();
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

let downAt: { x: number; y: number } | null = null;
labelRenderer.domElement.addEventListener("pointerdown", (event) => {
  downAt = { x: event.clientX, y: event.clientY };
});
labelRenderer.domElement.addEventListener("pointerup", (event) => {
  // A click, not the end of an orbit drag.
  if (!downAt || Math.hypot(event.clientX - downAt.x, event.clientY - downAt.y) > 5) return;
  const hit = pick(event);
  const bedId = hit?.object.userData.bedId as string | undefined;
  if (bedId) focusBed(bedId);
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
  let text: string;
  if (conditions.length && region) text = `${conditions.join(", ")} (${region.replace(/_/g, " ")})`;
  else if (view?.patient) text = `${view.patient.name}, ${view.patient.age} · ${view.bed.label}${region ? ` · ${region.replace(/_/g, " ")}` : ""}`;
  else text = view ? `${view.bed.label} · empty` : "";
  tooltip.textContent = text;
  tooltip.classList.toggle("condition", conditions.length > 0);
  tooltip.style.left = `${event.clientX + 14}px`;
  tooltip.style.top = `${event.clientY + 14}px`;
  tooltip.hidden = text === "";
}

// ---- side panel -----------------------------------------------------------------------------------
function select(bedId: string | null): void {
  selectedBedId = bedId;
  const view = bedId ? ward?.beds.get(bedId) : undefined;
  panel.hidden = !view;
  ecg.select(view?.patient?.id ?? null);
  renderPanel();
}

let panelDirty = false;
function renderPanel(): void {
  panelDirty = false;
  const view = selectedBedId ? ward?.beds.get(selectedBedId) : undefined;
  if (!view || !ward) return;
  const patient = view.patient;
  const rows: string[] = [];
  const escape = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  rows.push(`<h2>${escape(patient ? `${patient.name}, ${patient.age}` : view.bed.label)}</h2>`);
  rows.push(`<div class="muted">${escape(`${view.room.name} · ${view.bed.label}${patient ? ` · ${patient.sex}` : " · empty"}`)}</div>`);
  if (patient) {
    const word = statusWord(view.deviation);
    rows.push(`<div class="panel-status badge ${word}">${word}${view.deviation != null ? ` · deviation ${Math.round(view.deviation * 100)}%` : ""}${view.worstMetric ? ` · worst ${escape(shortName(view.worstMetric, ward.metrics.get(view.worstMetric)?.display))}` : ""}</div>`);
    if (patient.conditions?.length) {
      rows.push(`<h3>Conditions</h3><ul>${patient.conditions.map((c) => `<li>${escape(c.display || c.code)} <span class="muted">${escape((c.regions ?? []).join(", "))}</span></li>`).join("")}</ul>`);
    }
    rows.push(`<h3>Latest values</h3><table>`);
    const items = [...view.latest.values()].sort((a, b) => a.metric.localeCompare(b.metric));
    for (const item of items) {
      const metric = ward.metrics.get(item.metric);
      rows.push(`<tr class="${item.artefact ? "artefact" : ""}"><td>${escape(metric?.display ?? item.metric)}</td><td class="num">${formatNumber(item.value, metric?.decimals)} ${escape(unitText(item.unit || metric?.unit))}</td><td>${item.artefact ? "artefact" : ""}</td></tr>`);
    }
    rows.push(`</table>`);
  }
  panelBody.innerHTML = rows.join("");
}
$("panel-close").addEventListener("click", () => {
  select(null);
  overview(false);
});

// ---- the stream ---------------------------------------------------------------------------------
function applySnapshot(snapshot: SnapshotMessage): void {
  const previousSelection = selectedBedId;
  const firstSnapshot = ward === null;
  ward?.dispose();
  ward = new Ward(snapshot, kit, labelRenderer.domElement);
  scene.add(ward.root);
  hooks.beds = ward.bedCount;
  hooks.patients = ward.patients.size;
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

function recordValue(item: ValueItem): void {
  const subject = item.patient_id ?? item.room_id ?? item.bed_id ?? "unknown";
  hooks.lastValues[`${subject}/${item.metric}`] = item.value;
}

const stream = new LiveStream(streamUrl(window.location), {
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
          if (selectedBedId && item.bed_id === selectedBedId) panelDirty = true;
          else if (selectedBedId && item.patient_id && ward?.bedByPatient.get(item.patient_id)?.bed.id === selectedBedId) panelDirty = true;
        }
        break;
      case "status":
        ward?.applyStatus(message.items ?? []);
        panelDirty = panelDirty || selectedBedId !== null;
        break;
      case "waveform":
        ecg.push(message.patient_id, message.metric, message.start, message.rate_hz, message.samples ?? []);
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
        text = "live";
        break;
      case "connecting":
        text = state.attempt > 1 ? `reconnecting (attempt ${state.attempt})` : "connecting";
        break;
      case "waiting":
        text = `disconnected · retry in ${(state.retryInMs / 1000).toFixed(1)} s`;
        break;
    }
    hooks.connection = state.kind;
    connectionNode.textContent = text;
    connectionNode.className = `connection ${state.kind}`;
  },
});
stream.start();

// ---- the frame loop -----------------------------------------------------------------------------
let lastVisibilityCheck = 0;
let lastPanelRender = 0;
function frame(now: number): void {
  requestAnimationFrame(frame);
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
  if (needsRender) {
    needsRender = false;
    renderer.render(scene, camera);
    labelRenderer.render(scene, camera);
  }
  if (!panel.hidden) ecg.draw();
}
requestAnimationFrame(frame);
