//! The patient's medical record in the panel: allergies (first, and loud when high risk),
//! active medications with what they are for, and recent laboratory results with their flags
//! and reference ranges, as the twin carries them from the FHIR record (docs/stream.md). A body
//! region's detail shows the part of the record that relates to it: the server places each
//! item at its regions; the page only filters.

import { formatNumber } from "./format";
import { regionName, t, tOr } from "./i18n";
import type { AllergyInfo, LabInfo, MedicationInfo, PatientInfo } from "./protocol";

const escape = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** A FHIR date or dateTime as a reader wants it: the day, and the time when it has one. */
export function shortDate(text: string | null | undefined): string {
  if (!text) return "";
  const date = new Date(text);
  if (text.length <= 10 || Number.isNaN(date.getTime())) return text.slice(0, 10);
  return `${date.toLocaleDateString()} ${date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
}

/** Flags that mean "out of range", and whether critically so. */
const FLAG_ARROW: Record<string, string> = { H: "↑", HH: "↑↑", L: "↓", LL: "↓↓", A: "!", AA: "!!", HU: "↑↑", LU: "↓↓" };
export function labAbnormal(lab: LabInfo): boolean {
  return lab.flag != null && lab.flag !== "N";
}

function labValue(lab: LabInfo): string {
  if (lab.value != null) {
    const decimals = Number.isInteger(lab.value) ? 0 : Math.min(3, String(lab.value).split(".")[1]?.length ?? 1);
    return `${formatNumber(lab.value, decimals)}${lab.unit ? ` ${lab.unit}` : ""}`;
  }
  return lab.text ?? "–";
}

function labRange(lab: LabInfo): string {
  if (lab.reference_text) return lab.reference_text;
  const range = lab.reference_range;
  if (!range) return "";
  const [low, high] = range;
  if (low != null && high != null) return `${low}–${high}`;
  if (low != null) return `≥ ${low}`;
  if (high != null) return `≤ ${high}`;
  return "";
}

function allergyItem(allergy: AllergyInfo): string {
  const high = allergy.criticality === "high";
  const details = [
    allergy.criticality ? tOr(`criticality.${allergy.criticality}`, allergy.criticality) : "",
    allergy.category.map((c) => tOr(`category.${c}`, c)).join(", "),
    allergy.reactions.length ? `→ ${allergy.reactions.join(", ")}` : "",
    allergy.verification === "unconfirmed" ? t("verification.unconfirmed") : "",
    shortDate(allergy.recorded),
  ].filter(Boolean);
  return `<li class="allergy${high ? " critical" : ""}" data-criticality="${escape(allergy.criticality ?? "")}">
    ${high ? "⚠ " : ""}<b>${escape(allergy.display || allergy.coding?.code || "?")}</b>
    <span class="muted">${escape(details.join(" · "))}</span></li>`;
}

export function allergiesHtml(patient: PatientInfo): string {
  const allergies = [...(patient.allergies ?? [])].sort((a, b) => Number(b.criticality === "high") - Number(a.criticality === "high"));
  if (!allergies.length) {
    return `<div class="allergies none" data-testid="panel-allergies" data-count="0">${t("panel.no_allergies")}</div>`;
  }
  const critical = allergies.some((a) => a.criticality === "high");
  return `<div class="allergies${critical ? " critical" : ""}" data-testid="panel-allergies" data-count="${allergies.length}">
    <h3>${critical ? "⚠ " : ""}${t("panel.allergies")} (${allergies.length})</h3>
    <ul>${allergies.map(allergyItem).join("")}</ul></div>`;
}

function medicationItem(medication: MedicationInfo): string {
  const details = [
    medication.dosage ?? "",
    medication.reasons.length ? `${t("panel.for")} ${medication.reasons.join(", ")}` : "",
    medication.since ? `${t("panel.since")} ${shortDate(medication.since)}` : "",
    medication.status !== "active" ? tOr(`medstatus.${medication.status}`, medication.status) : "",
  ].filter(Boolean);
  return `<li data-reference="${escape(medication.reference)}"><b>${escape(medication.display || medication.coding?.code || "?")}</b>
    <span class="muted">${escape(details.join(" · "))}</span></li>`;
}

export function medicationsHtml(patient: PatientInfo, list = patient.medications ?? []): string {
  if (!list.length) return "";
  return `<h3>${t("panel.medications")} (${list.length})</h3><ul class="medications" data-testid="panel-medications">${list.map(medicationItem).join("")}</ul>`;
}

function labRow(lab: LabInfo): string {
  const abnormal = labAbnormal(lab);
  const flag = lab.flag && lab.flag !== "N"
    ? `<span class="lab-flag" title="${escape(tOr(`flag.${lab.flag}`, lab.flag))}">${FLAG_ARROW[lab.flag] ?? lab.flag} ${escape(tOr(`flag.${lab.flag}`, lab.flag))}</span>` : "";
  const range = labRange(lab);
  return `<tr class="${abnormal ? "abnormal" : ""}" data-reference="${escape(lab.reference)}" data-flag="${escape(lab.flag ?? "")}">
    <td>${escape(lab.display || lab.coding?.code || "?")}</td>
    <td class="num">${escape(labValue(lab))}</td><td>${flag}</td>
    <td class="muted">${range ? `${t("panel.range")} ${escape(range)}` : ""}</td>
    <td class="muted">${escape(shortDate(lab.effective))}</td></tr>`;
}

export function labsHtml(patient: PatientInfo, list = patient.labs ?? []): string {
  if (!list.length) return "";
  return `<h3>${t("panel.labs")} (${list.length})</h3><table class="labs" data-testid="panel-labs">${list.map(labRow).join("")}</table>`;
}

/** The conditions, medications and labs of the record that the server places at `region`. */
export function relatedHtml(patient: PatientInfo, region: string): string {
  const at = (regions: string[] | undefined) => (regions ?? []).includes(region);
  const conditions = patient.conditions.filter((c) => at(c.regions));
  const medications = (patient.medications ?? []).filter((m) => at(m.regions));
  const labs = (patient.labs ?? []).filter((l) => at(l.regions));
  const parts: string[] = [];
  if (conditions.length) {
    parts.push(`<h4>${t("panel.conditions")}</h4><ul class="related-conditions">${conditions.map((c) => `<li data-code="${escape(c.code)}">${escape(c.display || c.code)}</li>`).join("")}</ul>`);
  }
  if (medications.length) parts.push(`<h4>${t("panel.medications")}</h4><ul class="medications">${medications.map(medicationItem).join("")}</ul>`);
  if (labs.length) parts.push(`<h4>${t("panel.labs")}</h4><table class="labs">${labs.map(labRow).join("")}</table>`);
  return `<div class="related" data-testid="region-related" data-region="${escape(region)}" data-conditions="${conditions.length}" data-medications="${medications.length}" data-labs="${labs.length}">
    <h3>${t("panel.related")} · ${escape(regionName(region))}</h3>${parts.length ? parts.join("") : `<div class="muted">${t("panel.related_none")}</div>`}</div>`;
}
