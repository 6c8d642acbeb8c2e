//! The procedural patient avatar: a supine body built from shared primitive geometries, one mesh
//! per body region, keyed exactly by the catalog's region keys. No external models are loaded.
//!
//! Avatar frame: the body lies along +z (head at -z, toward the headboard), anterior is +y, and
//! the patient's left side is +x (right = anterior x head-direction).

import * as THREE from "three";
import { BODY_REGIONS, type BodyRegion } from "./protocol";

type Shape = "sphere" | "capsule" | "box";

interface RegionSpec {
  shape: Shape;
  /** Centre in the avatar frame, metres. */
  position: [number, number, number];
  /** Sphere/box: full extents. Capsule: [diameter, length, diameter], axis along z. */
  size: [number, number, number];
  organ?: "heart" | "lung";
}

// One description for both sides; `side` is +1 for left, -1 for right.
function paired(
  name: string,
  shape: Shape,
  position: [number, number, number],
  size: [number, number, number],
): Array<[string, RegionSpec]> {
  return [
    [`${name}_left`, { shape, position: [position[0], position[1], position[2]], size }],
    [`${name}_right`, { shape, position: [-position[0], position[1], position[2]], size }],
  ];
}

const REGION_SPECS: Record<BodyRegion, RegionSpec> = Object.fromEntries([
  ["head", { shape: "sphere", position: [0, 0.12, -0.78], size: [0.21, 0.21, 0.23] }],
  ["face", { shape: "sphere", position: [0, 0.21, -0.79], size: [0.15, 0.05, 0.17] }],
  ["neck", { shape: "capsule", position: [0, 0.1, -0.64], size: [0.1, 0.1, 0.1] }],
  ["chest", { shape: "box", position: [0, 0.11, -0.43], size: [0.36, 0.2, 0.32] }],
  ["heart", { shape: "sphere", position: [0.035, 0.225, -0.45], size: [0.1, 0.06, 0.11], organ: "heart" }],
  ["lung_left", { shape: "sphere", position: [0.095, 0.215, -0.44], size: [0.12, 0.05, 0.24], organ: "lung" }],
  ["lung_right", { shape: "sphere", position: [-0.095, 0.215, -0.44], size: [0.12, 0.05, 0.24], organ: "lung" }],
  ["abdomen", { shape: "box", position: [0, 0.1, -0.16], size: [0.32, 0.18, 0.22] }],
  ["pelvis", { shape: "box", position: [0, 0.1, 0.02], size: [0.34, 0.17, 0.16] }],
  ["back", { shape: "box", position: [0, 0.005, -0.3], size: [0.34, 0.02, 0.56] }],
  ...paired("axilla", "sphere", [0.19, 0.14, -0.53], [0.08, 0.08, 0.08]),
  ...paired("upper_arm", "capsule", [0.25, 0.1, -0.42], [0.09, 0.3, 0.09]),
  ...paired("forearm", "capsule", [0.27, 0.09, -0.16], [0.075, 0.26, 0.075]),
  ...paired("hand", "box", [0.28, 0.07, 0.02], [0.075, 0.035, 0.09]),
  ...paired("finger", "capsule", [0.28, 0.07, 0.1], [0.024, 0.08, 0.024]),
  ...paired("thigh", "capsule", [0.1, 0.1, 0.28], [0.14, 0.42, 0.14]),
  ...paired("leg", "capsule", [0.1, 0.08, 0.66], [0.1, 0.38, 0.1]),
  ...paired("foot", "box", [0.1, 0.1, 0.9], [0.08, 0.14, 0.1]),
]) as Record<BodyRegion, RegionSpec>;

/** Geometries and materials shared by every avatar in the ward (40 beds => ~1000 meshes, 3 geometries). */
export class AvatarKit {
  readonly sphere = new THREE.SphereGeometry(0.5, 10, 8);
  // Radius 0.5, straight part 1 => axis length 2 before scaling.
  readonly capsule = new THREE.CapsuleGeometry(0.5, 1, 2, 8);
  readonly box = new THREE.BoxGeometry(1, 1, 1);
  readonly heart = new THREE.MeshLambertMaterial({
    color: 0xd23a4a, transparent: true, opacity: 0.75, depthWrite: false,
  });
  readonly lung = new THREE.MeshLambertMaterial({
    color: 0x7fb4e6, transparent: true, opacity: 0.6, depthWrite: false,
  });
  /** Regions a condition sits in; a colour outside the green-amber-red status scale. */
  readonly condition = new THREE.MeshLambertMaterial({
    color: 0x9b59d0, emissive: 0x5a1f8f, emissiveIntensity: 0.55,
  });
  readonly conditionOrgan = new THREE.MeshLambertMaterial({
    color: 0xb06ae0, emissive: 0x6a2fa8, emissiveIntensity: 0.8, transparent: true, opacity: 0.85,
    depthWrite: false,
  });

  /** A region whose values are out of normal (amber) or critical (red), as the twin judges it. */
  readonly abnormal = new THREE.MeshLambertMaterial({ color: 0xf0a020, emissive: 0x6a4000, emissiveIntensity: 0.5 });
  readonly critical = new THREE.MeshLambertMaterial({ color: 0xe0302a, emissive: 0x7a0c08, emissiveIntensity: 0.7 });
  readonly abnormalOrgan = new THREE.MeshLambertMaterial({
    color: 0xf0a020, emissive: 0x6a4000, emissiveIntensity: 0.8, transparent: true, opacity: 0.9, depthWrite: false,
  });
  readonly criticalOrgan = new THREE.MeshLambertMaterial({
    color: 0xff3a30, emissive: 0x901010, emissiveIntensity: 0.9, transparent: true, opacity: 0.9, depthWrite: false,
  });

  /** A body material for one patient; its colour follows the patient's status. */
  bodyMaterial(): THREE.MeshLambertMaterial {
    return new THREE.MeshLambertMaterial({ color: 0xd9b89c });
  }

  dispose(): void {
    for (const g of [this.sphere, this.capsule, this.box]) g.dispose();
    for (const m of [this.heart, this.lung, this.condition, this.conditionOrgan, this.abnormal, this.critical, this.abnormalOrgan, this.criticalOrgan]) m.dispose();
  }
}

export interface Avatar {
  root: THREE.Group;
  regions: Map<BodyRegion, THREE.Mesh>;
  body: THREE.MeshLambertMaterial;
  /** Each region's state as last applied (`normal` until the twin says otherwise). */
  states: Map<BodyRegion, string>;
}

/**
 * Colours one region by the twin's state: critical red, abnormal amber, a condition's own
 * violet, normal skin (or the organ's own colour). Materials are shared; only the mesh's
 * reference changes. Returns true when it changed.
 */
export function setRegionState(avatar: Avatar, kit: AvatarKit, region: BodyRegion, state: string): boolean {
  const mesh = avatar.regions.get(region);
  if (!mesh || avatar.states.get(region) === state) return false;
  avatar.states.set(region, state);
  const organ = REGION_SPECS[region].organ;
  let material: THREE.Material;
  switch (state) {
    case "critical":
      material = organ ? kit.criticalOrgan : kit.critical;
      break;
    case "abnormal":
      material = organ ? kit.abnormalOrgan : kit.abnormal;
      break;
    case "condition":
      material = organ ? kit.conditionOrgan : kit.condition;
      break;
    default:
      material = organ ? (organ === "heart" ? kit.heart : kit.lung) : avatar.body;
  }
  mesh.material = material;
  mesh.userData.state = state;
  return true;
}

/**
 * Builds one avatar. `conditionNames` maps a region to the conditions sitting in it; those
 * regions take the condition material and carry the names for the hover tooltip.
 */
export function buildAvatar(kit: AvatarKit, conditionNames: Map<string, string[]>): Avatar {
  const root = new THREE.Group();
  root.name = "avatar";
  const body = kit.bodyMaterial();
  const regions = new Map<BodyRegion, THREE.Mesh>();
  const states = new Map<BodyRegion, string>();
  for (const region of BODY_REGIONS) {
    const spec = REGION_SPECS[region];
    const conditions = conditionNames.get(region) ?? [];
    let material: THREE.Material;
    if (spec.organ) {
      material = conditions.length ? kit.conditionOrgan : spec.organ === "heart" ? kit.heart : kit.lung;
    } else {
      material = conditions.length ? kit.condition : body;
    }
    const geometry = spec.shape === "sphere" ? kit.sphere : spec.shape === "capsule" ? kit.capsule : kit.box;
    const mesh = new THREE.Mesh(geometry, material);
    mesh.name = region;
    mesh.position.set(...spec.position);
    if (spec.shape === "capsule") {
      mesh.scale.set(spec.size[0], spec.size[1] / 2, spec.size[2]);
      mesh.rotation.x = Math.PI / 2;
    } else {
      mesh.scale.set(...spec.size);
    }
    if (spec.organ) mesh.renderOrder = 1;
    mesh.userData.region = region;
    mesh.userData.conditions = conditions;
    mesh.userData.state = conditions.length ? "condition" : "normal";
    root.add(mesh);
    regions.set(region, mesh);
    states.set(region, mesh.userData.state as string);
  }
  return { root, regions, body, states };
}

/** Where a label for a region should float, in the avatar frame: above it, and outward for limbs. */
export function labelAnchor(region: BodyRegion): THREE.Vector3 {
  const spec = REGION_SPECS[region];
  const [x, y, z] = spec.position;
  const outward = Math.abs(x) > 0.15 ? Math.sign(x) * 0.12 : 0;
  return new THREE.Vector3(x + outward, y + spec.size[1] / 2 + 0.12, z);
}
