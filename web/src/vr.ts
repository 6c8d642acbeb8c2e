//! Immersive VR through three.js' WebXRManager: an "Enter VR" button where the browser offers
//! `immersive-vr`, the viewpoint standing beside a bed, and the controllers' rays: the trigger
//! (select) on a body region opens that region's detail, on another bed goes there, anywhere
//! else moves to the next bed of the round. DOM labels do not reach a headset, so in VR the text
//! is drawn into the world: an in-world panel at the bed (the patient, or the selected region's
//! detail) and a label at each body region with its live values, drawn to canvas textures.
//!
//! Readable at arm's length: the panel hangs about 0.85 m from the eyes; its body text is 40 px
//! on a canvas of 1280 px per metre, 31 mm tall, about 2.1° of visual angle there; the region
//! labels' 44 px text on 1280 px per metre is 34 mm, about 1.8° at 1.1 m (the far side of the
//! body). Desktop and touch are untouched: nothing here runs until a session starts.

import * as THREE from "three";

export interface VrLine {
  text: string;
  color?: string;
}

export interface VrCardContent {
  title: string;
  lines: VrLine[];
  /** The NEWS2 band colour (or the region's state colour) for the panel's edge. */
  accent: string;
}

/** One region's in-world label: where it floats (in the avatar's frame) and its text rows. */
export interface VrLabel {
  region: string;
  anchor: THREE.Vector3;
  lines: VrLine[];
}

/** Canvas pixels per metre of in-world text (panel and labels). */
const PIXELS_PER_METRE = 1280;
const PANEL_WIDTH_PX = 1024;
const PANEL_HEIGHT_PX = 768;
const PANEL_FONT_PX = 40;
const PANEL_TITLE_PX = 52;
const LABEL_FONT_PX = 44;
const LABEL_WIDTH_PX = 512;
const RAY_LENGTH = 5;

interface LabelSprite {
  sprite: THREE.Sprite;
  canvas: HTMLCanvasElement;
  texture: THREE.CanvasTexture;
  text: string;
}

export class VrSession {
  /** The camera's parent: moved to teleport, at the origin outside VR. */
  readonly rig = new THREE.Group();
  private readonly card: THREE.Mesh;
  private readonly cardCanvas = document.createElement("canvas");
  private readonly cardTexture: THREE.CanvasTexture;
  private savedCamera: THREE.Vector3 | null = null;
  private readonly controllers: THREE.Object3D[] = [];
  private readonly raycaster = new THREE.Raycaster();
  /** The region labels of the bed the viewer stands at, by region. */
  private readonly labels = new Map<string, LabelSprite>();
  private labelParent: THREE.Object3D | null = null;
  /** What the panel and the labels show now, as text (for tests and for redraw decisions). */
  panelText: string[] = [];
  frames = 0;
  teleports = 0;
  selects = 0;

  constructor(
    private readonly renderer: THREE.WebGLRenderer,
    scene: THREE.Scene,
    camera: THREE.PerspectiveCamera,
    /** What the rays can hit: the ward's beds and avatars. */
    private readonly pickables: () => THREE.Object3D[],
    /** A select (trigger) with what its ray hit first; `null` when it hit nothing. */
    private readonly onSelect: (hit: THREE.Intersection | null, onPanel: boolean) => void,
    private readonly onChange: (presenting: boolean) => void,
  ) {
    renderer.xr.enabled = true;
    renderer.xr.setReferenceSpaceType("local-floor");
    scene.add(this.rig);
    this.rig.add(camera);
    this.cardCanvas.width = PANEL_WIDTH_PX;
    this.cardCanvas.height = PANEL_HEIGHT_PX;
    this.cardTexture = new THREE.CanvasTexture(this.cardCanvas);
    this.cardTexture.colorSpace = THREE.SRGBColorSpace;
    this.card = new THREE.Mesh(
      new THREE.PlaneGeometry(PANEL_WIDTH_PX / PIXELS_PER_METRE, PANEL_HEIGHT_PX / PIXELS_PER_METRE),
      new THREE.MeshBasicMaterial({ map: this.cardTexture, transparent: true }),
    );
    this.card.name = "vr-panel";
    this.card.visible = false;
    scene.add(this.card);
    const rayGeometry = new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(0, 0, 0), new THREE.Vector3(0, 0, -1)]);
    const rayMaterial = new THREE.LineBasicMaterial({ color: 0x7fd0ff, transparent: true, opacity: 0.8 });
    for (const index of [0, 1]) {
      const controller = renderer.xr.getController(index);
      const ray = new THREE.Line(rayGeometry, rayMaterial);
      ray.name = "ray";
      ray.scale.z = RAY_LENGTH;
      ray.raycast = () => {};
      controller.add(ray);
      controller.addEventListener("select", () => this.select(controller));
      this.rig.add(controller);
      this.controllers.push(controller);
    }
    renderer.xr.addEventListener("sessionstart", () => {
      this.savedCamera = camera.position.clone();
      this.onChange(true);
    });
    renderer.xr.addEventListener("sessionend", () => {
      this.rig.position.set(0, 0, 0);
      this.rig.rotation.set(0, 0, 0);
      if (this.savedCamera) camera.position.copy(this.savedCamera);
      this.card.visible = false;
      this.clearLabels();
      this.onChange(false);
    });
  }

  get presenting(): boolean {
    return this.renderer.xr.isPresenting;
  }

  /** Offers the button only where the browser can start an immersive VR session. */
  static async supported(): Promise<boolean> {
    const xr = (navigator as Navigator & { xr?: { isSessionSupported(mode: string): Promise<boolean> } }).xr;
    if (!xr) return false;
    try {
      return await xr.isSessionSupported("immersive-vr");
    } catch {
      return false;
    }
  }

  async enter(): Promise<void> {
    const xr = (navigator as Navigator & { xr?: { requestSession(mode: string, init: object): Promise<XRSession> } }).xr;
    if (!xr) return;
    const session = await xr.requestSession("immersive-vr", { optionalFeatures: ["local-floor"] });
    await this.renderer.xr.setSession(session);
  }

  async exit(): Promise<void> {
    await this.renderer.xr.getSession()?.end();
  }

  /** The controller's ray in world space, and the first thing it meets. */
  private select(controller: THREE.Object3D): void {
    this.selects += 1;
    controller.updateMatrixWorld(true);
    const origin = new THREE.Vector3().setFromMatrixPosition(controller.matrixWorld);
    const direction = new THREE.Vector3(0, 0, -1).transformDirection(controller.matrixWorld);
    this.raycaster.set(origin, direction);
    this.raycaster.far = RAY_LENGTH;
    const hits = this.raycaster.intersectObjects([...this.pickables(), ...(this.card.visible ? [this.card] : [])], false);
    const first = hits[0] ?? null;
    this.onSelect(first && first.object !== this.card ? first : null, first?.object === this.card);
  }

  /**
   * A controller pose, in the rig's (the reference space's) frame, that points its ray at
   * `world`: for a test driving an emulated controller as a hand would.
   */
  aimAt(world: THREE.Vector3, from = new THREE.Vector3(0.2, 1.3, -0.15)): { position: number[]; quaternion: number[] } {
    this.rig.updateMatrixWorld(true);
    const target = this.rig.worldToLocal(world.clone());
    const look = new THREE.Matrix4().lookAt(from, target, new THREE.Vector3(0, 1, 0));
    const quaternion = new THREE.Quaternion().setFromRotationMatrix(look);
    return { position: from.toArray(), quaternion: quaternion.toArray() };
  }

  /** Where the in-world panel hangs, in world space. */
  panelPosition(): THREE.Vector3 {
    return this.card.getWorldPosition(new THREE.Vector3());
  }

  /**
   * Stands the viewer at the side of a bed (`bed` is its group), facing it, with the panel
   * beside the head of the bed, within arm's reach.
   */
  standAt(bed: THREE.Object3D, content: VrCardContent): void {
    const stand = bed.localToWorld(new THREE.Vector3(1.0, 0, -0.1));
    const centre = bed.localToWorld(new THREE.Vector3(0, 0, -0.1));
    this.rig.position.set(stand.x, 0, stand.z);
    this.rig.rotation.set(0, Math.atan2(stand.x - centre.x, stand.z - centre.z), 0);
    const cardAt = bed.localToWorld(new THREE.Vector3(0.45, 1.5, -0.75));
    this.card.position.copy(cardAt);
    this.card.lookAt(stand.x, 1.5, stand.z);
    this.card.visible = true;
    this.drawCard(content);
    this.teleports += 1;
  }

  drawCard(content: VrCardContent): void {
    const g = this.cardCanvas.getContext("2d")!;
    const { width, height } = this.cardCanvas;
    g.clearRect(0, 0, width, height);
    g.fillStyle = "rgba(14, 20, 28, 0.94)";
    g.fillRect(0, 0, width, height);
    g.fillStyle = content.accent;
    g.fillRect(0, 0, 20, height);
    g.fillStyle = "#ffffff";
    g.font = `bold ${PANEL_TITLE_PX}px system-ui, sans-serif`;
    g.fillText(content.title, 44, 66, width - 64);
    g.font = `${PANEL_FONT_PX}px system-ui, sans-serif`;
    const lineHeight = PANEL_FONT_PX * 1.3;
    const fits = Math.floor((height - 110) / lineHeight);
    content.lines.slice(0, fits).forEach((line, i) => {
      g.fillStyle = line.color ?? "#dfe6ee";
      g.fillText(line.text, 44, 130 + i * lineHeight, width - 64);
    });
    this.panelText = [content.title, ...content.lines.slice(0, fits).map((l) => l.text)];
    this.cardTexture.needsUpdate = true;
  }

  /**
   * The region labels of the bed the viewer stands at, attached to its avatar (`parent`).
   * Labels are redrawn only when their text changes; other beds have none (their DOM labels
   * serve the desktop).
   */
  setLabels(parent: THREE.Object3D, labels: VrLabel[]): void {
    if (this.labelParent !== parent) this.clearLabels();
    this.labelParent = parent;
    const wanted = new Set(labels.map((l) => l.region));
    for (const [region, label] of this.labels) {
      if (wanted.has(region)) continue;
      this.disposeLabel(label);
      this.labels.delete(region);
    }
    for (const label of labels) {
      const text = label.lines.map((l) => `${l.text}|${l.color ?? ""}`).join("\n");
      let held = this.labels.get(label.region);
      if (!held) {
        const canvas = document.createElement("canvas");
        const texture = new THREE.CanvasTexture(canvas);
        texture.colorSpace = THREE.SRGBColorSpace;
        const sprite = new THREE.Sprite(new THREE.SpriteMaterial({ map: texture, depthTest: false, transparent: true }));
        sprite.name = `vr-label-${label.region}`;
        sprite.renderOrder = 10;
        sprite.raycast = () => {};
        parent.add(sprite);
        held = { sprite, canvas, texture, text: "" };
        this.labels.set(label.region, held);
      }
      held.sprite.position.copy(label.anchor);
      if (held.text === text) continue;
      held.text = text;
      const rows = Math.max(1, label.lines.length);
      const lineHeight = Math.round(LABEL_FONT_PX * 1.25);
      held.canvas.width = LABEL_WIDTH_PX;
      held.canvas.height = rows * lineHeight + 16;
      const g = held.canvas.getContext("2d")!;
      g.fillStyle = "rgba(14, 20, 28, 0.86)";
      g.fillRect(0, 0, held.canvas.width, held.canvas.height);
      g.font = `bold ${LABEL_FONT_PX}px system-ui, sans-serif`;
      g.textBaseline = "middle";
      label.lines.forEach((line, i) => {
        g.fillStyle = line.color ?? "#ffffff";
        g.fillText(line.text, 12, 8 + lineHeight * (i + 0.5), LABEL_WIDTH_PX - 24);
      });
      held.texture.needsUpdate = true;
      // World size from the canvas at PIXELS_PER_METRE, whatever the avatar's scale.
      held.sprite.scale.set(held.canvas.width / PIXELS_PER_METRE, held.canvas.height / PIXELS_PER_METRE, 1);
    }
  }

  /** The in-world labels' texts by region, as drawn. */
  labelTexts(): Record<string, string[]> {
    return Object.fromEntries([...this.labels].map(([region, label]) => [region, label.text.split("\n").map((row) => row.split("|")[0])]));
  }

  private disposeLabel(label: LabelSprite): void {
    label.sprite.removeFromParent();
    label.texture.dispose();
    label.sprite.material.dispose();
  }

  private clearLabels(): void {
    for (const label of this.labels.values()) this.disposeLabel(label);
    this.labels.clear();
    this.labelParent = null;
  }
}
