//! Immersive VR through three.js' WebXRManager: an "Enter VR" button where the browser offers
//! `immersive-vr`, the viewpoint standing beside a bed, a controller's trigger (select) moving
//! it to the next bed of the round, and a card at the bed with text readable at arm's length
//! (name, NEWS2 with its band, key vitals), drawn to a canvas because DOM labels do not reach
//! a headset. Desktop and touch are untouched: nothing here runs until a session starts.

import * as THREE from "three";

export interface VrCardContent {
  title: string;
  lines: Array<{ text: string; color?: string }>;
  /** The NEWS2 band colour for the card's edge. */
  accent: string;
}

export class VrSession {
  /** The camera's parent: moved to teleport, at the origin outside VR. */
  readonly rig = new THREE.Group();
  private readonly card: THREE.Mesh;
  private readonly cardCanvas = document.createElement("canvas");
  private readonly cardTexture: THREE.CanvasTexture;
  private savedCamera: THREE.Vector3 | null = null;
  frames = 0;
  teleports = 0;

  constructor(
    private readonly renderer: THREE.WebGLRenderer,
    scene: THREE.Scene,
    camera: THREE.PerspectiveCamera,
    private readonly onSelect: () => void,
    private readonly onChange: (presenting: boolean) => void,
  ) {
    renderer.xr.enabled = true;
    renderer.xr.setReferenceSpaceType("local-floor");
    scene.add(this.rig);
    this.rig.add(camera);
    this.cardCanvas.width = 1024;
    this.cardCanvas.height = 512;
    this.cardTexture = new THREE.CanvasTexture(this.cardCanvas);
    this.cardTexture.colorSpace = THREE.SRGBColorSpace;
    // 0.8 m wide: at arm's length its 56 px text is about as large as a monitor's at a desk.
    this.card = new THREE.Mesh(
      new THREE.PlaneGeometry(0.8, 0.4),
      new THREE.MeshBasicMaterial({ map: this.cardTexture, transparent: true }),
    );
    this.card.visible = false;
    scene.add(this.card);
    for (const index of [0, 1]) {
      const controller = renderer.xr.getController(index);
      controller.addEventListener("select", () => this.onSelect());
      this.rig.add(controller);
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

  /**
   * Stands the viewer at the side of a bed (`bed` is its group), facing it, with the card
   * floating above the bed's far side at eye height.
   */
  standAt(bed: THREE.Object3D, content: VrCardContent): void {
    const stand = bed.localToWorld(new THREE.Vector3(1.0, 0, -0.1));
    const centre = bed.localToWorld(new THREE.Vector3(0, 0, -0.1));
    this.rig.position.set(stand.x, 0, stand.z);
    this.rig.rotation.set(0, Math.atan2(stand.x - centre.x, stand.z - centre.z), 0);
    const cardAt = bed.localToWorld(new THREE.Vector3(-0.35, 1.55, -0.4));
    this.card.position.copy(cardAt);
    this.card.lookAt(stand.x, 1.55, stand.z);
    this.card.visible = true;
    this.drawCard(content);
    this.teleports += 1;
  }

  drawCard(content: VrCardContent): void {
    const g = this.cardCanvas.getContext("2d")!;
    const { width, height } = this.cardCanvas;
    g.clearRect(0, 0, width, height);
    g.fillStyle = "rgba(14, 20, 28, 0.92)";
    g.fillRect(0, 0, width, height);
    g.fillStyle = content.accent;
    g.fillRect(0, 0, 24, height);
    g.fillStyle = "#ffffff";
    g.font = "bold 64px system-ui, sans-serif";
    g.fillText(content.title, 56, 90, width - 80);
    g.font = "56px system-ui, sans-serif";
    content.lines.slice(0, 5).forEach((line, i) => {
      g.fillStyle = line.color ?? "#dfe6ee";
      g.fillText(line.text, 56, 180 + i * 76, width - 80);
    });
    this.cardTexture.needsUpdate = true;
  }
}
