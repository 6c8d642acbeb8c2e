//! The page's two languages, English and Simplified Chinese, as one small dictionary with the
//! medical terms a ward uses in each. No framework: `t(key)` at render time, and a listener list
//! that re-renders whatever shows text when the language changes. Unknown keys fall back to
//! English, then to the key itself, so a missing entry shows rather than vanishes.

export type Language = "en" | "zh";

const STORAGE_KEY = "metaward.language";

const EN: Record<string, string> = {
  "app.hint": "drag to orbit · scroll to zoom · click a bed to visit · click a body region for its detail · double-click for the whole ward",
  "connection.live": "live",
  "connection.connecting": "connecting",
  "overview.title": "Ward overview",
  "overview.bed": "Bed",
  "overview.patient": "Patient",
  "overview.news2": "NEWS2",
  "overview.alarms": "Alarms",
  "overview.sort.bed": "by bed",
  "overview.sort.acuity": "by acuity",
  "band.zero": "zero",
  "band.low": "low",
  "band.low-medium": "low-medium",
  "band.medium": "medium",
  "band.high": "high",
  "band.none": "no score",
  "score.incomplete": "incomplete",
  "priority.low": "low",
  "priority.medium": "medium",
  "priority.high": "high",
  "alarm.count": "alarms",
  "alarm.ack": "Acknowledge",
  "alarm.by": "By",
  "alarm.acked_by": "acknowledged by",
  "alarm.none": "No active alarms",
  "alarm.failed": "could not acknowledge",
  "panel.demographics": "Patient",
  "panel.sex": "sex",
  "panel.age": "age",
  "panel.conditions": "Conditions",
  "panel.news2": "NEWS2 breakdown",
  "panel.scale": "SpO₂ scale",
  "panel.response": "Response",
  "panel.alarms": "Alarms",
  "panel.values": "Latest values",
  "panel.regions": "Body regions",
  "panel.region": "Region",
  "panel.trend": "Last 4 hours",
  "panel.no_history": "no stored values in the last 4 hours",
  "panel.empty": "empty",
  "param.respiration_rate": "Respiration rate",
  "param.spo2": "SpO₂",
  "param.air_or_oxygen": "Air or oxygen",
  "param.systolic_bp": "Systolic BP",
  "param.pulse": "Pulse",
  "param.consciousness": "Consciousness",
  "param.temperature": "Temperature",
  "status.scored": "scored",
  "status.missing": "missing",
  "status.stale": "stale",
  "status.artefact": "artefact only",
  "status.invalid": "invalid",
  "status.needs-air-or-oxygen": "air or oxygen unknown",
  "region.normal": "normal",
  "region.condition": "condition",
  "region.abnormal": "abnormal",
  "region.critical": "critical",
  "room.alarm": "out of range",
  "wave.ecg": "ECG lead II",
  "wave.pleth": "Plethysmogram",
  "wave.waiting": "waiting for waveform",
  "vr.enter": "Enter VR",
  "vr.exit": "Exit VR",
  "lang.switch": "中文",
  "round.title": "Round note",
  "round.last_review": "last reviewed",
  "round.never": "not reviewed on a round yet",
  "round.placeholder": "Note (stored with your name and the time)",
  "round.reviewed": "reviewed",
  "round.save": "Save note",
  "round.saved": "saved",
  "round.failed": "not saved",
  "round.summary": "Round summary",
  "round.seen": "seen",
  "round.started": "round started",
  "round.by": "notes by",
  "round.open_alarms": "open alarms",
  "acvpu.A": "Alert",
  "acvpu.C": "new Confusion",
  "acvpu.V": "responds to Voice",
  "acvpu.P": "responds to Pain",
  "acvpu.U": "Unresponsive",
  // Single sign-on (auth.ts)
  "login.sso": "Sign in with SSO",
  "login.or": "or with a metaward password",
  "sso.signing_in": "signing in with SSO…",
  "sso.error.unlinked": "Your SSO account is not linked to a metaward user. Ask an administrator to link it (metaward user link NAME --oidc-subject SUB).",
  "sso.error.linked_elsewhere": "The metaward user of that name is linked to another SSO account.",
  "sso.error.disabled": "This account is disabled.",
  "sso.error.bad_state": "The SSO sign-in expired or was already used: start again.",
  "sso.error.wrong_browser": "The SSO sign-in was started in another browser or tab: start again here.",
  "sso.error.provider_refused": "The identity provider did not sign you in.",
  "sso.error.code_refused": "The identity provider refused the sign-in code: start again.",
  "sso.error.bad_id_token": "The identity provider's answer did not verify; the sign-in was refused.",
  "sso.error.wrong_issuer": "The answer came from another identity provider; the sign-in was refused.",
  "sso.error.provider_unreachable": "The identity provider cannot be reached.",
  "sso.error.provider_misconfigured": "Single sign-on is misconfigured on the server.",
  "sso.error.bad_code": "The SSO sign-in expired: start again.",
  "sso.error.no_group": "Your SSO account is no longer in a group that may use metaward.",
  "sso.error.server_error": "The server could not set up your account; see its log.",
  "sso.error": "Single sign-on failed.",
};

const ZH: Record<string, string> = {
  "app.hint": "拖动旋转 · 滚轮缩放 · 点击床位查看 · 点击身体部位查看详情 · 双击回到全病区",
  "connection.live": "实时",
  "connection.connecting": "连接中",
  "overview.title": "病区总览",
  "overview.bed": "床位",
  "overview.patient": "患者",
  "overview.news2": "NEWS2",
  "overview.alarms": "报警",
  "overview.sort.bed": "按床位",
  "overview.sort.acuity": "按危重程度",
  "band.zero": "零分",
  "band.low": "低危",
  "band.low-medium": "低-中危",
  "band.medium": "中危",
  "band.high": "高危",
  "band.none": "无评分",
  "score.incomplete": "不完整",
  "priority.low": "低",
  "priority.medium": "中",
  "priority.high": "高",
  "alarm.count": "报警",
  "alarm.ack": "确认",
  "alarm.by": "确认人",
  "alarm.acked_by": "确认人",
  "alarm.none": "无活动报警",
  "alarm.failed": "确认失败",
  "panel.demographics": "患者信息",
  "panel.sex": "性别",
  "panel.age": "年龄",
  "panel.conditions": "诊断",
  "panel.news2": "NEWS2 评分明细",
  "panel.scale": "血氧饱和度量表",
  "panel.response": "临床应对",
  "panel.alarms": "报警",
  "panel.values": "最新数值",
  "panel.regions": "身体部位",
  "panel.region": "部位",
  "panel.trend": "最近 4 小时",
  "panel.no_history": "最近 4 小时无存储数值",
  "panel.empty": "空床",
  "param.respiration_rate": "呼吸频率",
  "param.spo2": "血氧饱和度",
  "param.air_or_oxygen": "吸氧或空气",
  "param.systolic_bp": "收缩压",
  "param.pulse": "脉搏",
  "param.consciousness": "意识水平",
  "param.temperature": "体温",
  "status.scored": "已评分",
  "status.missing": "缺失",
  "status.stale": "过期",
  "status.artefact": "仅有伪差",
  "status.invalid": "无效",
  "status.needs-air-or-oxygen": "未知是否吸氧",
  "region.normal": "正常",
  "region.condition": "病灶",
  "region.abnormal": "异常",
  "region.critical": "危急",
  "room.alarm": "超出范围",
  "wave.ecg": "心电图 II 导联",
  "wave.pleth": "脉搏波（容积描记）",
  "wave.waiting": "等待波形",
  "vr.enter": "进入 VR",
  "vr.exit": "退出 VR",
  "lang.switch": "English",
  "round.title": "查房记录",
  "round.last_review": "上次查房",
  "round.never": "尚未查房",
  "round.placeholder": "记录（保存时附上您的姓名和时间）",
  "round.reviewed": "已查房",
  "round.save": "保存记录",
  "round.saved": "已保存",
  "round.failed": "未保存",
  "round.summary": "查房小结",
  "round.seen": "已查看",
  "round.started": "查房开始于",
  "round.by": "记录人",
  "round.open_alarms": "未确认报警",
  "acvpu.A": "清醒",
  "acvpu.C": "新发意识模糊",
  "acvpu.V": "对声音有反应",
  "acvpu.P": "对疼痛有反应",
  "acvpu.U": "无反应",
  // Metric and region names a clinician reads in Chinese.
  "metric.heart_rate": "心率",
  "metric.pulse_rate": "脉率",
  "metric.spo2": "血氧",
  "metric.respiration_rate": "呼吸",
  "metric.body_temperature": "体温",
  "metric.nibp": "无创血压",
  "metric.etco2": "呼末二氧化碳",
  "metric.battery": "电量",
  "metric.inhaled_oxygen_flow": "吸氧流量",
  "metric.consciousness_acvpu": "意识",
  "metric.room_temperature": "室温",
  "metric.room_humidity": "湿度",
  "metric.room_co2": "二氧化碳",
  "metric.room_noise": "噪声",
  "metric.room_illuminance": "照度",
  "metric.room_pm25": "PM2.5",
  "sex.female": "女",
  "sex.male": "男",
  "regionname.head": "头部", "regionname.face": "面部", "regionname.neck": "颈部", "regionname.chest": "胸部",
  "regionname.heart": "心脏", "regionname.lung_left": "左肺", "regionname.lung_right": "右肺",
  "regionname.abdomen": "腹部", "regionname.pelvis": "骨盆", "regionname.back": "背部",
  "regionname.axilla_left": "左腋窝", "regionname.axilla_right": "右腋窝",
  "regionname.upper_arm_left": "左上臂", "regionname.upper_arm_right": "右上臂",
  "regionname.forearm_left": "左前臂", "regionname.forearm_right": "右前臂",
  "regionname.hand_left": "左手", "regionname.hand_right": "右手",
  "regionname.finger_left": "左手指", "regionname.finger_right": "右手指",
  "regionname.thigh_left": "左大腿", "regionname.thigh_right": "右大腿",
  "regionname.leg_left": "左小腿", "regionname.leg_right": "右小腿",
  "regionname.foot_left": "左足", "regionname.foot_right": "右足",
  // 单点登录 (auth.ts)
  "login.sso": "单点登录 (SSO)",
  "login.or": "或使用 metaward 密码登录",
  "sso.signing_in": "正在通过单点登录…",
  "sso.error.unlinked": "您的单点登录账号尚未关联 metaward 用户，请联系管理员关联（metaward user link 用户名 --oidc-subject SUB）。",
  "sso.error.linked_elsewhere": "同名的 metaward 用户已关联另一个单点登录账号。",
  "sso.error.disabled": "此账号已停用。",
  "sso.error.bad_state": "单点登录已过期或已使用，请重新登录。",
  "sso.error.wrong_browser": "单点登录是在另一个浏览器或标签页中发起的，请在此处重新登录。",
  "sso.error.provider_refused": "身份提供方未能让您登录。",
  "sso.error.code_refused": "身份提供方拒绝了登录码，请重新登录。",
  "sso.error.bad_id_token": "身份提供方的应答未通过验证，登录被拒绝。",
  "sso.error.wrong_issuer": "应答来自另一个身份提供方，登录被拒绝。",
  "sso.error.provider_unreachable": "无法连接身份提供方。",
  "sso.error.provider_misconfigured": "服务器上的单点登录配置有误。",
  "sso.error.bad_code": "单点登录已过期，请重新登录。",
  "sso.error.no_group": "您的单点登录账号已不在允许使用 metaward 的用户组中。",
  "sso.error.server_error": "服务器无法设置您的账号，请查看服务器日志。",
  "sso.error": "单点登录失败。",
};

const DICTIONARIES: Record<Language, Record<string, string>> = { en: EN, zh: ZH };

function initialLanguage(): Language {
  const stored = globalThis.localStorage?.getItem(STORAGE_KEY);
  if (stored === "en" || stored === "zh") return stored;
  return /^zh/i.test(globalThis.navigator?.language ?? "") ? "zh" : "en";
}

let current: Language = initialLanguage();
const listeners: Array<() => void> = [];

export function language(): Language {
  return current;
}

export function t(key: string): string {
  return DICTIONARIES[current][key] ?? EN[key] ?? key;
}

/** A translation if the dictionary has one, else `fallback` (metric and region names). */
export function tOr(key: string, fallback: string): string {
  return DICTIONARIES[current][key] ?? fallback;
}

export function regionName(region: string): string {
  return tOr(`regionname.${region}`, region.replace(/_/g, " "));
}

export function setLanguage(next: Language): void {
  if (next === current) return;
  current = next;
  globalThis.localStorage?.setItem(STORAGE_KEY, next);
  document.documentElement.lang = next === "zh" ? "zh-CN" : "en";
  applyStatic();
  for (const listener of listeners) listener();
}

export function onLanguageChange(listener: () => void): void {
  listeners.push(listener);
}

/** Fills every element carrying `data-i18n="key"` with its text. */
export function applyStatic(root: ParentNode = document): void {
  for (const node of root.querySelectorAll<HTMLElement>("[data-i18n]")) {
    node.textContent = t(node.dataset.i18n!);
  }
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
}
