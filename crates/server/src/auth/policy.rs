//! The access policy of every HTTP route, as data: which role a route needs and how its ward
//! scope is checked. The middleware consults it for every request before routing.
//!
//! Invariant: a route under `/api/` or `/fhir` that is not listed here needs an admin (with
//! every ward in scope), so a new route is closed until someone decides who may use it; only
//! the routes in `PUBLIC` (and the web page's static assets) are open to anonymous callers.

use axum::http::Method;

use super::Role;

/// How a route's ward scope is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Not patient data (the catalog, the caller's own session, device technical state).
    Unscoped,
    /// A list the handler filters to the caller's wards (wards, rooms, beds, patients, alarms,
    /// the stream).
    Filtered,
    /// The `{patient_id}` in the path must be in one of the caller's wards.
    Patient,
    /// The `{room_id}` in the path must be in one of the caller's wards.
    Room,
    /// The alarm `{alarm_id}`'s patient or room must be in one of the caller's wards.
    Alarm,
    /// Data that cannot be filtered by ward (SQL, the FHIR record, device associations, dead
    /// letters, users, the audit trail): only for users of every ward.
    AllWards,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub role: Role,
    pub scope: Scope,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    Authenticated(Rule),
}

/// What the policy says about one request: the route template it matched (for the audit
/// trail; never the concrete path, which may hold a patient id) and who may use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub template: &'static str,
    pub access: Access,
}

const fn rule(role: Role, scope: Scope) -> Access {
    Access::Authenticated(Rule { role, scope })
}

use Role::{Admin, Nurse, Observer, Physician};
use Scope::{Alarm, AllWards, Filtered, Patient, Room, Unscoped};

/// Open to anyone: health and metrics (counts, no patient data), the OpenAPI document, login,
/// refresh, single sign-on, and the FHIR CapabilityStatement (FHIR clients read it before authenticating).
pub const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    // Single sign-on (auth::oidc): how to sign in, the redirect to the identity provider, its
    // callback, and the page's one-time code for the session it started.
    ("GET", "/api/v1/auth/config"),
    ("GET", "/api/v1/auth/oidc/login"),
    ("GET", "/api/v1/auth/oidc/callback"),
    ("POST", "/api/v1/auth/oidc/redeem"),
    ("GET", "/fhir/metadata"),
];

/// Every authenticated route under `/api/v1`: method, template, role, scope.
pub const API: &[(&str, &str, Access)] = &[
    ("GET", "/api/v1/auth/me", rule(Observer, Unscoped)),
    ("POST", "/api/v1/auth/logout", rule(Observer, Unscoped)),
    ("GET", "/api/v1/catalog", rule(Observer, Unscoped)),
    ("GET", "/api/v1/wards", rule(Observer, Filtered)),
    ("GET", "/api/v1/rooms", rule(Observer, Filtered)),
    (
        "GET",
        "/api/v1/rooms/{room_id}/history",
        rule(Observer, Room),
    ),
    ("GET", "/api/v1/beds", rule(Observer, Filtered)),
    ("GET", "/api/v1/patients", rule(Observer, Filtered)),
    (
        "GET",
        "/api/v1/patients/{patient_id}",
        rule(Observer, Patient),
    ),
    (
        "GET",
        "/api/v1/patients/{patient_id}/twin",
        rule(Observer, Patient),
    ),
    (
        "GET",
        "/api/v1/patients/{patient_id}/history",
        rule(Observer, Patient),
    ),
    (
        "GET",
        "/api/v1/patients/{patient_id}/regions",
        rule(Observer, Patient),
    ),
    (
        "GET",
        "/api/v1/patients/{patient_id}/trends",
        rule(Observer, Patient),
    ),
    (
        "GET",
        "/api/v1/patients/{patient_id}/news2/history",
        rule(Observer, Patient),
    ),
    (
        "GET",
        "/api/v1/patients/{patient_id}/waveform",
        rule(Observer, Patient),
    ),
    (
        "GET",
        "/api/v1/patients/{patient_id}/alarm-limits/{metric}",
        rule(Observer, Patient),
    ),
    (
        "PUT",
        "/api/v1/patients/{patient_id}/alarm-limits/{metric}",
        rule(Physician, Patient),
    ),
    (
        "DELETE",
        "/api/v1/patients/{patient_id}/alarm-limits/{metric}",
        rule(Physician, Patient),
    ),
    (
        "GET",
        "/api/v1/patients/{patient_id}/oxygen-target",
        rule(Observer, Patient),
    ),
    (
        "PUT",
        "/api/v1/patients/{patient_id}/oxygen-target",
        rule(Physician, Patient),
    ),
    (
        "DELETE",
        "/api/v1/patients/{patient_id}/oxygen-target",
        rule(Physician, Patient),
    ),
    // Round notes name their patient in the body or the query, not the path: the rounds
    // handlers check it, and filter lists, by the caller's wards.
    ("GET", "/api/v1/rounds/notes", rule(Observer, Filtered)),
    ("POST", "/api/v1/rounds/notes", rule(Nurse, Filtered)),
    ("GET", "/api/v1/rounds/reviews", rule(Observer, Filtered)),
    ("GET", "/api/v1/alarms", rule(Observer, Filtered)),
    ("GET", "/api/v1/alarms/{alarm_id}", rule(Observer, Alarm)),
    (
        "POST",
        "/api/v1/alarms/{alarm_id}/acknowledge",
        rule(Nurse, Alarm),
    ),
    (
        "POST",
        "/api/v1/alarms/{alarm_id}/silence",
        rule(Nurse, Alarm),
    ),
    ("GET", "/api/v1/stream", rule(Observer, Filtered)),
    // Devices' registry and technical state are not patient data; their associations (which
    // bed or patient a device is on, over time) are, and are not filtered by ward.
    ("GET", "/api/v1/devices", rule(Observer, Unscoped)),
    (
        "GET",
        "/api/v1/devices/unassociated",
        rule(Observer, Unscoped),
    ),
    ("GET", "/api/v1/devices/technical", rule(Observer, Unscoped)),
    (
        "GET",
        "/api/v1/devices/{device_id}",
        rule(Observer, Unscoped),
    ),
    (
        "GET",
        "/api/v1/devices/{device_id}/associations",
        rule(Observer, AllWards),
    ),
    ("GET", "/api/v1/associations", rule(Observer, AllWards)),
    ("POST", "/api/v1/devices", rule(Admin, AllWards)),
    (
        "PUT",
        "/api/v1/devices/{device_id}/credential",
        rule(Admin, AllWards),
    ),
    (
        "DELETE",
        "/api/v1/devices/{device_id}/credential",
        rule(Admin, AllWards),
    ),
    (
        "POST",
        "/api/v1/devices/{device_id}/associations/end",
        rule(Admin, AllWards),
    ),
    ("POST", "/api/v1/associations", rule(Admin, AllWards)),
    // Raw device payloads may carry patient data.
    ("GET", "/api/v1/dead-letters", rule(Admin, AllWards)),
    // SQL: the handler runs a ward-scoped caller's query over views of their wards' rows.
    ("POST", "/api/v1/sql", rule(Physician, Filtered)),
    ("GET", "/api/v1/users", rule(Admin, AllWards)),
    ("POST", "/api/v1/users", rule(Admin, AllWards)),
    (
        "POST",
        "/api/v1/users/{name}/disable",
        rule(Admin, AllWards),
    ),
    ("POST", "/api/v1/users/{name}/enable", rule(Admin, AllWards)),
    (
        "POST",
        "/api/v1/users/{name}/reset-password",
        rule(Admin, AllWards),
    ),
    ("GET", "/api/v1/audit", rule(Admin, AllWards)),
    // API tokens (device and service credentials).
    ("GET", "/api/v1/tokens", rule(Admin, AllWards)),
    ("POST", "/api/v1/tokens", rule(Admin, AllWards)),
    ("DELETE", "/api/v1/tokens/{name}", rule(Admin, AllWards)),
    (
        "POST",
        "/api/v1/tokens/{name}/rotate",
        rule(Admin, AllWards),
    ),
];

/// Anything not listed: closed to all but admins of every ward.
const UNLISTED: Access = rule(Admin, AllWards);

/// Whether `path` fits `template` (`{name}` matches one non-empty segment).
fn matches(template: &str, path: &str) -> bool {
    let mut template_segments = template.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (template_segments.next(), path_segments.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t.starts_with('{') => {
                if p.is_empty() {
                    return false;
                }
            }
            (Some(t), Some(p)) if t == p => {}
            _ => return false,
        }
    }
}

/// The value of `{name}` in `path` under `template`.
pub fn path_param<'a>(template: &str, path: &'a str, name: &str) -> Option<&'a str> {
    let wanted = format!("{{{name}}}");
    template
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| *t == wanted)
        .map(|(_, p)| p)
}

pub fn decide(method: &Method, path: &str) -> Decision {
    let method = method.as_str();
    // HEAD is a GET without the body.
    let method = if method == "HEAD" { "GET" } else { method };
    if let Some((_, template)) = PUBLIC
        .iter()
        .find(|(m, template)| *m == method && *template == path)
    {
        return Decision {
            template,
            access: Access::Public,
        };
    }
    if let Some((_, template, access)) = API
        .iter()
        .find(|(m, template, _)| *m == method && matches(template, path))
    {
        return Decision {
            template,
            access: *access,
        };
    }
    if path == "/fhir" || path.starts_with("/fhir/") {
        // Reads are scoped by the handlers to the patients of the caller's wards
        // (`api::fhir_record::scope`), except what spans the whole record (system search and
        // history, a type's history): readers of every ward. Changes (the EMR's imports,
        // device observations posted over FHIR) by admins.
        let segments: Vec<&str> = path["/fhir".len()..]
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect();
        let whole_record =
            segments.is_empty() || (segments.len() <= 2 && segments.last() == Some(&"_history"));
        let (template, access) = if method == "GET" && whole_record {
            ("/fhir/{whole record}", rule(Observer, AllWards))
        } else if method == "GET" || path.ends_with("/_search") {
            ("/fhir/{read}", rule(Observer, Filtered))
        } else {
            ("/fhir/{change}", rule(Admin, AllWards))
        };
        return Decision { template, access };
    }
    if path.starts_with("/api/") || path == "/api" {
        return Decision {
            template: "/api/{unlisted}",
            access: UNLISTED,
        };
    }
    // The web page: static assets, no data.
    Decision {
        template: "/{asset}",
        access: Access::Public,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments() {
        assert!(matches(
            "/api/v1/patients/{patient_id}",
            "/api/v1/patients/p1"
        ));
        assert!(!matches(
            "/api/v1/patients/{patient_id}",
            "/api/v1/patients/"
        ));
        assert!(!matches(
            "/api/v1/patients/{patient_id}",
            "/api/v1/patients/p1/twin"
        ));
        assert_eq!(
            path_param(
                "/api/v1/patients/{patient_id}/twin",
                "/api/v1/patients/p1/twin",
                "patient_id"
            ),
            Some("p1")
        );
    }

    #[test]
    fn unlisted_routes_are_closed_and_assets_open() {
        let unlisted = decide(&Method::POST, "/api/v1/something-new");
        assert_eq!(unlisted.access, UNLISTED);
        assert_eq!(
            decide(&Method::GET, "/assets/index.js").access,
            Access::Public
        );
        assert_eq!(decide(&Method::GET, "/healthz").access, Access::Public);
        assert_eq!(
            decide(&Method::PUT, "/api/v1/patients/p1/alarm-limits/spo2").access,
            rule(Physician, Patient)
        );
        assert_eq!(
            decide(&Method::POST, "/fhir/Patient/_search").access,
            rule(Observer, Filtered)
        );
        assert_eq!(
            decide(&Method::GET, "/fhir/Patient/p1/_history").access,
            rule(Observer, Filtered)
        );
        for whole_record in ["/fhir", "/fhir/_history", "/fhir/Patient/_history"] {
            assert_eq!(
                decide(&Method::GET, whole_record).access,
                rule(Observer, AllWards),
                "{whole_record}"
            );
        }
        assert_eq!(
            decide(&Method::DELETE, "/fhir/Patient/1").access,
            rule(Admin, AllWards)
        );
        assert_eq!(
            decide(&Method::GET, "/fhir/metadata").access,
            Access::Public
        );
    }
}
