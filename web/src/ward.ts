//! The 3D ward built from one snapshot: room floors and low walls, beds, an avatar per occupied
//! bed, live value labels anchored at body regions, room sensor panels. A new snapshot (after a
//! reconnect) builds a new Ward; the old one is disposed whole.
//!
//! Performance rule: geometries and most materials are shared; DOM text is written only when the
//! formatted text changes; the renderer runs on requestAnimationFrame (see main.ts).

import * as THREE from "three";
import { CSS2DObject } from "three/examples/jsm/renderers/CSS2DRenderer.js";
import { AvatarKit, buildAvatar, setRegionState, type Avatar } from "./avatar";
import { BAND_COLOR, BAND_SYMBOL, NO_SCORE_COLOR, alarmText } from "./clinical";
import { formatNumber, isOutOfNormal, shortName, unitText } from "./format";
import { t, tOr } from "./i18n";
import {
  resolveRegion, type AlarmInfo, type BodyRegion, type MetricInfo, type PatientInfo, type RoomInfo,
  type RegionStatusInfo, type ScoreInfo, type SnapshotMessage, type StatusItem, type ValueItem, type BedInfo,
} from "./protocol";

/** A metric's short name in the page's language. */
export function metricLabel(metric: string, display?: string): string {
  return tOr(`metric.${metric.startsWith("nibp") ? "nibp" : metric}`, metric.startsWith("nibp") ? "NIBP" : shortName(metric, display));
}

const WALL_HEIGHT = 1.0;
const WALL_THICKNESS = 0.06;
const BED_LENGTH = 2.1;
const BED_WIDTH = 0.95;
const MATTRESS_TOP = 0.62;
const NIBP = ["nibp_systolic", "nibp_diastolic", "nibp_mean"] as const;

/** Where each region's label floats, in the avatar frame, so the labels of one body don't overlap. */
const LABEL_ANCHORS: Partial<Record<BodyRegion, [number, number, number]>> = {
  head: [0, 0.5, -1.0],
  face: [-0.38, 0.4, -0.9],
  neck: [0.38, 0.35, -0.72],
  heart: [0, 0.55, -0.42],
  chest: [0, 0.45, -0.3],
  lung_left: [0.42, 0.4, -0.58],
  lung_right: [-0.42, 0.4, -0.5],
  axilla_left: [0.5, 0.3, -0.75],
  axilla_right: [-0.5, 0.3, -0.75],
  upper_arm_left: [0.6, 0.3, -0.3],
  upper_arm_right: [-0.6, 0.3, -0.3],
  finger_left: [0.55, 0.25, 0.15],
  finger_right: [-0.55, 0.25, 0.15],
};

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A span whose text is written only when it changes, flashing briefly when it does. */
class LiveText {
  private text = "";
  constructor(readonly node: HTMLElement) {}
  set(text: string, flashTarget?: HTMLElement): boolean {
    if (text === this.text) return false;
    const first = this.text === "";
    this.text = text;
    this.node.textContent = text;
    if (!first && flashTarget) {
      flashTarget.animate(
        [{ backgroundColor: "rgba(255, 230, 120, 0.85)" }, { backgroundColor: "rgba(255, 230, 120, 0)" }],
        { duration: 700, easing: "ease-out" },
      );
    }
    return true;
  }
}

/** One row of a label: a metric's name, value, unit and flags. */
class ValueRow {
  readonly node: HTMLDivElement;
  private readonly values: Map<string, LiveText>;
  private readonly unit: LiveText;
  private artefactMetrics = new Set<string>();
  private abnormalMetrics = new Set<string>();
  readonly nameNode: HTMLSpanElement;

  constructor(subjectId: string, metrics: readonly string[], name: string, testIdPrefix: string, readonly metricKey = metrics[0]) {
    this.node = el("div", "vrow");
    this.nameNode = el("span", "vname", name);
    this.node.append(this.nameNode);
    const value = el("span", "vval");
    this.values = new Map();
    metrics.forEach((metric, i) => {
      const span = el("span");
      span.dataset.testid = `${testIdPrefix}-${subjectId}-${metric}`;
      span.dataset.metric = metric;
      this.values.set(metric, new LiveText(span));
      if (metric === "nibp_diastolic") value.append("/");
      if (metric === "nibp_mean") {
        const mean = el("span", "vmean", " (");
        mean.append(span, ")");
        value.append(mean);
      } else {
        if (i > 0 && !metric.startsWith("nibp")) value.append(" ");
        value.append(span);
      }
    });
    const unit = el("span", "vunit");
    this.unit = new LiveText(unit);
    this.node.append(value, unit, el("span", "vflag", "artefact"));
  }

  update(item: ValueItem, metric: MetricInfo | undefined): void {
    const live = this.values.get(item.metric);
    if (!live) return;
    live.set(formatNumber(item.value, metric?.decimals), this.node);
    this.unit.set(unitText(item.unit || metric?.unit));
    toggle(this.artefactMetrics, item.metric, item.artefact);
    toggle(this.abnormalMetrics, item.metric, !item.artefact && isOutOfNormal(item.value, metric?.normal));
    this.node.classList.toggle("artefact", this.artefactMetrics.size > 0);
    this.node.classList.toggle("abnormal", this.abnormalMetrics.size > 0);
    this.node.title = this.artefactMetrics.size > 0 ? "flagged as artefact (outside the plausible range)" : "";
  }

  get abnormal(): boolean {
    return this.abnormalMetrics.size > 0;
  }
}

function toggle(set: Set<string>, key: string, on: boolean): void {
  if (on) set.add(key);
  else set.delete(key);
}

interface RegionLabel {
  object: CSS2DObject;
  node: HTMLDivElement;
}

export interface BedView {
  bed: BedInfo;
  room: RoomInfo;
  group: THREE.Group;
  patient: PatientInfo | null;
  avatar: Avatar | null;
  ringMaterial: THREE.MeshBasicMaterial | null;
  nameLabel: CSS2DObject;
  nameNode: HTMLDivElement;
  badge: HTMLSpanElement | null;
  badgeWord: HTMLSpanElement | null;
  badgeDetail: HTMLSpanElement | null;
  alarmChip: HTMLSpanElement | null;
  score: ScoreInfo | null;
  alarms: AlarmInfo[];
  far: boolean;
  regionLabels: Map<BodyRegion, RegionLabel>;
  rows: Map<string, ValueRow>;
  deviation: number | null;
  worstMetric: string | null;
  /** Latest value per metric, for the side panel. */
  latest: Map<string, ValueItem>;
  patientName?: HTMLDivElement;
}

/** The conditions sitting in each region of a patient's body, by name. */
function conditionNamesOf(patient: PatientInfo): Map<string, string[]> {
  const names = new Map<string, string[]>();
  for (const condition of patient.conditions ?? []) {
    for (const regionKey of condition.regions ?? []) {
      const region = resolveRegion(regionKey);
      if (!region) continue;
      const list = names.get(region) ?? [];
      list.push(condition.display || condition.code);
      names.set(region, list);
    }
  }
  return names;
}

interface RoomView {
  room: RoomInfo;
  panelObject: CSS2DObject;
  far: boolean;
  panel: HTMLDivElement;
  rows: Map<string, ValueRow>;
  alarmLine: HTMLDivElement;
  alarms: AlarmInfo[];
}


export class Ward {
  readonly root = new THREE.Group();
  readonly beds = new Map<string, BedView>();
  readonly bedByPatient = new Map<string, BedView>();
  readonly patients = new Map<string, PatientInfo>();
  readonly metrics = new Map<string, MetricInfo>();
  readonly rooms = new Map<string, RoomView>();
  /** Meshes a click or hover can hit; each carries userData.bedId. */
  readonly pickables: THREE.Object3D[] = [];
  readonly bounds = new THREE.Box3();
  /** Set when the scene changed in a way that needs a new frame (new labels, status colours). */
  dirty = true;
  private readonly ownMaterials: THREE.Material[] = [];
  private readonly labels: CSS2DObject[] = [];

  /**
   * `labelLayer` is the CSS2DRenderer's element. Labels are put in it at once (hidden until
   * rendered), so every label's data-testid is in the DOM even while the label is culled.
   */
  constructor(snapshot: SnapshotMessage, private readonly kit: SharedKit, private readonly labelLayer: HTMLElement) {
    this.root.name = "ward";
    for (const metric of snapshot.metrics ?? []) this.metrics.set(metric.key, metric);
    for (const patient of snapshot.patients ?? []) this.patients.set(patient.id, patient);
    const patientByBed = new Map<string, PatientInfo>();
    for (const patient of snapshot.patients ?? []) if (patient.bed_id) patientByBed.set(patient.bed_id, patient);

    // Wards side by side along x when the snapshot has more than one.
    let wardOffsetX = 0;
    for (const ward of snapshot.wards ?? []) {
      const wardGroup = new THREE.Group();
      wardGroup.name = `ward-${ward.id}`;
      wardGroup.position.x = wardOffsetX;
      let maxX = 0;
      let minX = Infinity;
      for (const room of ward.rooms ?? []) {
        this.buildRoom(wardGroup, room, patientByBed);
        minX = Math.min(minX, room.x);
        maxX = Math.max(maxX, room.x + room.width);
      }
      this.root.add(wardGroup);
      if (Number.isFinite(minX)) wardOffsetX += maxX - minX + 4;
    }
    this.root.updateMatrixWorld(true);
    this.bounds.setFromObject(this.root);
    if (this.bounds.isEmpty()) this.bounds.set(new THREE.Vector3(-5, 0, -5), new THREE.Vector3(5, 1, 5));
    for (const item of snapshot.values ?? []) this.applyValue(item);
    this.applyStatus(snapshot.status ?? []);
  }

  get bedCount(): number {
    return this.beds.size;
  }

  private buildRoom(parent: THREE.Group, room: RoomInfo, patientByBed: Map<string, PatientInfo>): void {
    const kit = this.kit;
    const roomGroup = new THREE.Group();
    roomGroup.name = `room-${room.id}`;
    roomGroup.position.set(room.x, 0, room.z);
    parent.add(roomGroup);

    const floor = new THREE.Mesh(kit.box, kit.floor);
    floor.scale.set(room.width, 0.02, room.depth);
    floor.position.set(room.width / 2, -0.01, room.depth / 2);
    roomGroup.add(floor);

    const walls: Array<[number, number, number, number]> = [
      // centre x, centre z, size x, size z
      [room.width / 2, 0, room.width, WALL_THICKNESS],
      [room.width / 2, room.depth, room.width, WALL_THICKNESS],
      [0, room.depth / 2, WALL_THICKNESS, room.depth],
      [room.width, room.depth / 2, WALL_THICKNESS, room.depth],
    ];
    for (const [x, z, sx, sz] of walls) {
      const wall = new THREE.Mesh(kit.box, kit.wall);
      wall.scale.set(sx, WALL_HEIGHT, sz);
      wall.position.set(x, WALL_HEIGHT / 2, z);
      roomGroup.add(wall);
    }

    // The sensor panel hangs on the back (z = 0) wall.
    const board = new THREE.Mesh(kit.box, kit.panel);
    board.scale.set(1.2, 0.7, 0.03);
    board.position.set(room.width / 2, WALL_HEIGHT + 0.45, 0.04);
    roomGroup.add(board);
    const post = new THREE.Mesh(kit.box, kit.wall);
    post.scale.set(0.06, 0.2, 0.06);
    post.position.set(room.width / 2, WALL_HEIGHT + 0.05, 0);
    roomGroup.add(post);

    const panel = el("div", "room-panel");
    panel.dataset.testid = `room-${room.id}`;
    panel.append(el("div", "room-name", room.name));
    const alarmLine = el("div", "room-alarm");
    alarmLine.dataset.testid = `room-alarm-${room.id}`;
    alarmLine.hidden = true;
    panel.append(alarmLine);
    const panelObject = new CSS2DObject(panel);
    panelObject.position.set(room.width / 2, WALL_HEIGHT + 0.45, 0.1);
    roomGroup.add(panelObject);
    this.addLabel(panelObject);
    this.rooms.set(room.id, { room, panel, panelObject, far: false, rows: new Map(), alarmLine, alarms: [] });

    // Beds are placed in ward coordinates (docs/stream.md); the room group sits at its corner.
    for (const bed of room.beds ?? []) {
      this.buildBed(roomGroup, room, bed, bed.x - room.x, bed.z - room.z, patientByBed.get(bed.id) ?? null);
    }
  }

  private buildBed(parent: THREE.Group, room: RoomInfo, bed: BedInfo, x: number, z: number, patient: PatientInfo | null): void {
    const kit = this.kit;
    const group = new THREE.Group();
    group.name = `bed-${bed.id}`;
    group.position.set(x, 0, z);
    // Degrees about the vertical axis (docs/stream.md).
    group.rotation.y = THREE.MathUtils.degToRad(bed.rotation ?? 0);
    parent.add(group);

    const frame = new THREE.Mesh(kit.box, kit.bedFrame);
    frame.scale.set(BED_WIDTH, 0.45, BED_LENGTH);
    frame.position.y = 0.3;
    const mattress = new THREE.Mesh(kit.box, kit.mattress);
    mattress.scale.set(BED_WIDTH - 0.05, 0.12, BED_LENGTH - 0.08);
    mattress.position.y = MATTRESS_TOP - 0.06;
    const headboard = new THREE.Mesh(kit.box, kit.bedFrame);
    headboard.scale.set(BED_WIDTH, 0.55, 0.06);
    headboard.position.set(0, 0.75, -BED_LENGTH / 2);
    const pillow = new THREE.Mesh(kit.box, kit.mattress);
    pillow.scale.set(0.5, 0.06, 0.3);
    pillow.position.set(0, MATTRESS_TOP + 0.03, -0.78);
    group.add(frame, mattress, headboard, pillow);
    for (const mesh of [frame, mattress, headboard, pillow]) {
      mesh.userData.bedId = bed.id;
      this.pickables.push(mesh);
    }

    const nameNode = el("div", "bed-label");
    const view: BedView = {
      bed, room, group, patient, avatar: null, ringMaterial: null,
      nameLabel: new CSS2DObject(nameNode), nameNode, badge: null, badgeWord: null, badgeDetail: null,
      alarmChip: null, score: null, alarms: [], far: false, regionLabels: new Map(), rows: new Map(),
      deviation: null, worstMetric: null, latest: new Map(),
    };
    nameNode.dataset.testid = `bed-${bed.id}`;
    if (patient) {
      view.patientName = el("div", "patient-name", `${patient.name}, ${patient.age}`);
      nameNode.append(view.patientName);
      // NEWS2: the number, the band's word and shape, on the band's colour.
      const badge = el("span", "badge news2 none");
      badge.dataset.testid = `news2-${patient.id}`;
      badge.append(el("span", "badge-name", "NEWS2 "));
      view.badgeWord = el("span", "badge-word");
      view.badgeDetail = el("span", "badge-detail");
      badge.append(view.badgeWord, view.badgeDetail);
      const alarmChip = el("span", "alarm-chip");
      alarmChip.dataset.testid = `bed-alarms-${patient.id}`;
      alarmChip.hidden = true;
      const line = el("div", "bed-line");
      line.append(el("span", "bed-text", `${bed.label} `), badge, alarmChip);
      nameNode.append(line);
      view.badge = badge;
      view.alarmChip = alarmChip;

      const avatar = buildAvatar(kit.avatar, conditionNamesOf(patient));
      avatar.root.position.y = MATTRESS_TOP;
      group.add(avatar.root);
      this.ownMaterials.push(avatar.body);
      avatar.root.traverse((object) => {
        object.userData.bedId = bed.id;
        if ((object as THREE.Mesh).isMesh) this.pickables.push(object);
      });
      view.avatar = avatar;

      const ringMaterial = new THREE.MeshBasicMaterial({ color: 0x8a8f98, side: THREE.DoubleSide });
      this.ownMaterials.push(ringMaterial);
      const ring = new THREE.Mesh(kit.ring, ringMaterial);
      ring.rotation.x = -Math.PI / 2;
      ring.position.y = 0.015;
      ring.scale.set(0.72, 1.2, 1);
      group.add(ring);
      view.ringMaterial = ringMaterial;
      this.bedByPatient.set(patient.id, view);
    } else {
      nameNode.append(el("div", "bed-line", `${bed.label} · ${t("panel.empty")}`));
      nameNode.classList.add("empty");
    }
    view.nameLabel.position.set(0, 1.45, -0.6);
    group.add(view.nameLabel);
    this.addLabel(view.nameLabel);
    this.beds.set(bed.id, view);
    if (patient) this.applyScore(patient.id, null);
  }

  /** Applies one value; returns false if nothing in the scene shows it. */
  applyValue(item: ValueItem): boolean {
    const metric = this.metrics.get(item.metric);
    if (item.patient_id) {
      const view = this.bedByPatient.get(item.patient_id);
      if (!view || !view.avatar) return false;
      view.latest.set(item.metric, item);
      const rowKey = item.metric.startsWith("nibp_") ? "nibp" : item.metric;
      let row = view.rows.get(rowKey);
      if (!row) {
        const region = resolveRegion(item.region) ?? resolveRegion(metric?.region) ?? "chest";
        const label = this.regionLabel(view, region);
        row = rowKey === "nibp"
          ? new ValueRow(item.patient_id, NIBP, metricLabel("nibp"), "value", "nibp")
          : new ValueRow(item.patient_id, [item.metric], metricLabel(item.metric, metric?.display), "value");
        if (metric?.display) row.node.title = metric.display;
        label.node.append(row.node);
        view.rows.set(rowKey, row);
      }
      row.update(item, metric);
      return true;
    }
    if (item.room_id) {
      const room = this.rooms.get(item.room_id);
      if (!room) return false;
      let row = room.rows.get(item.metric);
      if (!row) {
        row = new ValueRow(item.room_id, [item.metric], metricLabel(item.metric, metric?.display), "room");
        room.panel.append(row.node);
        room.rows.set(item.metric, row);
      }
      row.update(item, metric);
      this.paintRoom(room);
      return true;
    }
    return false;
  }

  private regionLabel(view: BedView, region: BodyRegion): RegionLabel {
    let label = view.regionLabels.get(region);
    if (label) return label;
    const node = el("div", "value-label");
    node.dataset.region = region;
    const object = new CSS2DObject(node);
    const mesh = view.avatar!.regions.get(region)!;
    const anchor = LABEL_ANCHORS[region];
    if (anchor) object.position.set(...anchor);
    else object.position.set(mesh.position.x * 2.2, mesh.position.y + 0.3, mesh.position.z);
    view.avatar!.root.add(object);
    this.addLabel(object);
    // A leader line from the region to its label.
    const line = new THREE.Line(this.kit.leader, this.kit.leaderMaterial);
    line.position.copy(mesh.position);
    const delta = object.position.clone().sub(mesh.position);
    line.scale.copy(delta);
    line.raycast = () => {};
    view.avatar!.root.add(line);
    label = { object, node };
    view.regionLabels.set(region, label);
    this.dirty = true;
    return label;
  }

  private addLabel(object: CSS2DObject): void {
    object.element.style.display = "none";
    this.labelLayer.append(object.element);
    this.labels.push(object);
  }

  /**
   * The deviation status is kept for the panel only; the bed's colour is its NEWS2 band
   * (applyScore), which is the published early-warning score, not our own measure.
   */
  applyStatus(items: StatusItem[]): void {
    for (const item of items) {
      const view = this.bedByPatient.get(item.patient_id);
      if (!view) continue;
      view.deviation = item.deviation;
      view.worstMetric = item.worst_metric;
    }
  }

  /** Shows a patient's NEWS2 on the bed: ring colour, number, band word and shape. */
  applyScore(patientId: string, score: ScoreInfo | null): void {
    const view = this.bedByPatient.get(patientId);
    if (!view || !view.badge) return;
    view.score = score;
    const color = score ? BAND_COLOR[score.band] ?? NO_SCORE_COLOR : NO_SCORE_COLOR;
    // Only a changed ring needs a new frame; the badge is DOM.
    if (view.ringMaterial && `#${view.ringMaterial.color.getHexString()}` !== color) {
      view.ringMaterial.color.set(color);
      this.dirty = true;
    }
    const word = score ? `${score.total}${score.complete ? "" : "?"} ${BAND_SYMBOL[score.band] ?? ""}` : "–";
    const detail = score ? ` ${t(`band.${score.band}`)}${score.complete ? "" : ` · ${t("score.incomplete")}`}` : ` ${t("band.none")}`;
    if (view.badgeWord!.textContent !== word) view.badgeWord!.textContent = word;
    if (view.badgeDetail!.textContent !== detail) view.badgeDetail!.textContent = detail;
    view.badge.className = `badge news2 ${score ? `band-${score.band}` : "none"}${score && !score.complete ? " incomplete" : ""}`;
    view.badge.style.setProperty("--status", color);
    view.badge.dataset.total = score ? String(score.total) : "";
    view.badge.dataset.band = score?.band ?? "";
    view.badge.title = score ? `${score.clinical_risk}: ${score.response}` : "";
  }

  /** Shows a bed's active alarms: how many, and the highest priority in word and colour. */
  applyPatientAlarms(patientId: string, alarms: AlarmInfo[]): void {
    const view = this.bedByPatient.get(patientId);
    if (!view || !view.alarmChip) return;
    view.alarms = alarms;
    paintAlarmChip(view.alarmChip, alarms);
  }

  applyRoomAlarms(roomId: string, alarms: AlarmInfo[]): void {
    const room = this.rooms.get(roomId);
    if (!room) return;
    room.alarms = alarms;
    this.paintRoom(room);
  }

  /** A room turns amber when a reading is out of range, red when it alarms at medium or high. */
  private paintRoom(room: RoomView): void {
    const outOfRange = [...room.rows.values()].some((row) => row.abnormal);
    const top = room.alarms[0]?.priority;
    const level = top === "high" || top === "medium" ? "red" : outOfRange || top === "low" ? "amber" : "";
    const className = `room-panel${room.far ? " far" : ""}${level ? ` room-${level}` : ""}`;
    if (room.panel.className !== className) room.panel.className = className;
    room.panel.dataset.level = level || "normal";
    const text = room.alarms.length
      ? `⚠ ${room.alarms.map((a) => metricLabel(a.condition, this.metrics.get(a.condition)?.display)).join(", ")} · ${t("room.alarm")}`
      : outOfRange ? `! ${t("room.alarm")}` : "";
    room.alarmLine.hidden = text === "";
    if (room.alarmLine.textContent !== text) room.alarmLine.textContent = text;
  }

  /** Colours a patient's avatar by the twin's region states. Returns true if anything changed. */
  applyRegions(patientId: string, regions: RegionStatusInfo[]): boolean {
    const view = this.bedByPatient.get(patientId);
    if (!view?.avatar) return false;
    let changed = false;
    const seen = new Set<BodyRegion>();
    for (const status of regions) {
      const region = resolveRegion(status.region);
      if (!region || seen.has(region)) continue;
      seen.add(region);
      if (setRegionState(view.avatar, this.kit.avatar, region, status.state)) changed = true;
      const mesh = view.avatar.regions.get(region);
      if (mesh) mesh.userData.reasons = status.reasons;
    }
    if (changed) this.dirty = true;
    return changed;
  }

  /**
   * A patient's new view (their record changed) at the bed they are in: the panel's data, the
   * name, and the avatar's condition highlights and hover names. Returns false when the patient
   * is not in that bed here (a move needs a fresh snapshot).
   */
  updatePatient(patient: PatientInfo): boolean {
    const view = this.bedByPatient.get(patient.id);
    if (!view?.avatar || !view.patient || view.bed.id !== patient.bed_id) return false;
    view.patient = patient;
    this.patients.set(patient.id, patient);
    const text = `${patient.name}, ${patient.age}`;
    if (view.patientName && view.patientName.textContent !== text) view.patientName.textContent = text;
    const names = conditionNamesOf(patient);
    for (const [region, mesh] of view.avatar.regions) {
      const list = names.get(region) ?? [];
      mesh.userData.conditions = list;
      const state = view.avatar.states.get(region);
      // The twin's region states follow (a value out of range outranks a condition); until
      // then a new condition shows at once and a gone one stops showing.
      if (list.length && state === "normal") setRegionState(view.avatar, this.kit.avatar, region, "condition");
      else if (!list.length && state === "condition") setRegionState(view.avatar, this.kit.avatar, region, "normal");
    }
    this.dirty = true;
    return true;
  }

  /** Re-writes every text that depends on the language. */
  relabel(): void {
    for (const view of this.beds.values()) {
      for (const row of view.rows.values()) row.nameNode.textContent = metricLabel(row.metricKey, this.metrics.get(row.metricKey)?.display);
      if (view.patient) {
        this.applyScore(view.patient.id, view.score);
        this.applyPatientAlarms(view.patient.id, view.alarms);
      }
    }
    for (const room of this.rooms.values()) {
      for (const row of room.rows.values()) row.nameNode.textContent = metricLabel(row.metricKey, this.metrics.get(row.metricKey)?.display);
      this.paintRoom(room);
    }
  }

  /** Shows value labels only for beds near the camera (or the selected one): 40 beds stay legible. */
  updateLabelVisibility(camera: THREE.Camera, selectedBedId: string | null, maxDistance: number): boolean {
    const position = new THREE.Vector3();
    let changed = false;
    for (const view of this.beds.values()) {
      view.group.getWorldPosition(position);
      const distance = position.distanceTo(camera.position);
      const near = view.bed.id === selectedBedId || distance < maxDistance;
      for (const label of view.regionLabels.values()) {
        if (label.object.visible !== near) changed = true;
        label.object.visible = near;
      }
      // Far away, the bed label shrinks to its status word so 40 beds stay readable.
      const far = distance > maxDistance * 2;
      if (far !== view.far) {
        view.far = far;
        view.nameNode.classList.toggle("far", far);
      }
    }
    // Far away, a room panel shows its name and only the readings out of their normal range.
    for (const room of this.rooms.values()) {
      room.panelObject.getWorldPosition(position);
      const far = position.distanceTo(camera.position) > maxDistance * 2;
      if (far !== room.far) {
        room.far = far;
        this.paintRoom(room);
      }
    }
    return changed;
  }

  bedFocusPoint(bedId: string): { target: THREE.Vector3; position: THREE.Vector3 } | null {
    const view = this.beds.get(bedId);
    if (!view) return null;
    const target = view.group.localToWorld(new THREE.Vector3(0, 0.7, -0.2));
    const position = view.group.localToWorld(new THREE.Vector3(1.9, 2.3, 1.9));
    return { target, position };
  }

  dispose(): void {
    for (const label of this.labels) label.element.remove();
    for (const material of this.ownMaterials) material.dispose();
    this.root.removeFromParent();
  }
}

export function paintAlarmChip(chip: HTMLElement, alarms: AlarmInfo[]): void {
  const open = alarms.filter((a) => a.acknowledged_at == null);
  const top = alarms[0]?.priority;
  chip.hidden = alarms.length === 0;
  const text = alarms.length ? `⚠ ${alarms.length} ${t(`priority.${top}`)}` : "";
  if (chip.textContent !== text) chip.textContent = text;
  chip.className = `alarm-chip${top ? ` prio-${top}` : ""}${alarms.length && open.length === 0 ? " acked" : ""}`;
  chip.dataset.count = String(alarms.length);
  chip.dataset.priority = top ?? "";
  chip.title = alarms.map((a) => `${t(`priority.${a.priority}`)}: ${alarmText(a)}`).join("\n");
}

/** Everything shared across all beds and rooms of every Ward built in this page. */
export class SharedKit {
  readonly avatar = new AvatarKit();
  readonly box = this.avatar.box;
  readonly ring = new THREE.RingGeometry(1.0, 1.08, 48);
  readonly leader = new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(0, 0, 0), new THREE.Vector3(1, 1, 1)]);
  readonly leaderMaterial = new THREE.LineBasicMaterial({ color: 0x9fb3c8, transparent: true, opacity: 0.7 });
  readonly floor = new THREE.MeshLambertMaterial({ color: 0xdfe4ea });
  readonly wall = new THREE.MeshLambertMaterial({ color: 0xa9b7c6 });
  readonly panel = new THREE.MeshLambertMaterial({ color: 0x1f2a36 });
  readonly bedFrame = new THREE.MeshLambertMaterial({ color: 0x8d99a6 });
  readonly mattress = new THREE.MeshLambertMaterial({ color: 0xf4f6f8 });
}
