//! Search requests: the query parameters of `GET /fhir/{type}?…` checked against the type's
//! search parameters and turned into clauses a store can answer (FHIR R4 search.html).
//!
//! Parameters are ANDed; comma-separated values of one parameter are ORed. A parameter the type
//! does not have is an error (400), not silently ignored as the spec permits by default: a
//! misspelt filter on patient data must not return everyone's results.

use crate::date::{self, DateRange};
use crate::outcome::RecordError;
use crate::params::{self, IndexValue, ParamKind, SearchParamDef};

/// Page size when `_count` is not given, and the largest page served.
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub resource_type: String,
    pub clauses: Vec<Clause>,
    pub sort: Vec<SortKey>,
    pub count: usize,
    pub offset: usize,
    /// `_include=Type:param`: the targets of these reference parameters join the page.
    pub includes: Vec<&'static SearchParamDef>,
    /// `_summary=count`: only the total.
    pub summary_count: bool,
}

/// One parameter: any of its values matches (OR).
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// The parameter name, or `_id` / `_lastUpdated`.
    pub param: String,
    pub values: Vec<ClauseValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClauseValue {
    Id(String),
    LastUpdated(Prefix, DateRange),
    Token {
        system: TokenSystem,
        code: Option<String>,
        negate: bool,
    },
    String {
        value: String,
        mode: StringMode,
    },
    Date(Prefix, DateRange),
    Reference {
        target_type: Option<String>,
        id: String,
    },
    /// `:missing=true` (the resource has no value) or `false` (it has one).
    Missing(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSystem {
    /// `code`: any system.
    Any,
    /// `|code`: no system.
    None,
    /// `system|code` or `system|`.
    Is(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMode {
    StartsWith,
    Exact,
    Contains,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
}

impl Prefix {
    /// Whether a resource's value range matches the parameter's range under this prefix
    /// (search.html#prefix: the range above/below the parameter's, containment for `eq`).
    pub fn matches(self, resource: DateRange, parameter: DateRange) -> bool {
        let contained = resource.low >= parameter.low && resource.high <= parameter.high;
        match self {
            Prefix::Eq => contained,
            Prefix::Ne => !contained,
            Prefix::Gt => resource.high > parameter.high,
            Prefix::Lt => resource.low < parameter.low,
            Prefix::Ge => resource.high > parameter.high || contained,
            Prefix::Le => resource.low < parameter.low || contained,
            Prefix::Sa => resource.low > parameter.high,
            Prefix::Eb => resource.high < parameter.low,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// A date or string parameter of the type, `_id` or `_lastUpdated`.
    pub param: String,
    pub descending: bool,
}

/// The result parameters this server understands, beside the type's search parameters.
const RESULT_PARAMS: &[&str] = &[
    "_count", "_offset", "_sort", "_include", "_summary", "_format",
];

impl SearchRequest {
    /// Checks `pairs` (decoded `name=value` query pairs) for a search of `resource_type`.
    pub fn parse(
        resource_type: &str,
        pairs: &[(String, String)],
    ) -> Result<SearchRequest, RecordError> {
        if !crate::types::is_storable_type(resource_type) {
            return Err(RecordError::not_found(format!(
                "unknown resource type `{resource_type}`"
            )));
        }
        let mut request = SearchRequest {
            resource_type: resource_type.to_owned(),
            clauses: Vec::new(),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
            includes: Vec::new(),
            summary_count: false,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "_count" => {
                    request.count = value
                        .parse::<usize>()
                        .map_err(|_| {
                            RecordError::invalid(format!(
                                "_count must be a whole number, not `{value}`"
                            ))
                        })?
                        .min(MAX_COUNT);
                }
                "_offset" => {
                    request.offset = value.parse().map_err(|_| {
                        RecordError::invalid(format!(
                            "_offset must be a whole number, not `{value}`"
                        ))
                    })?;
                }
                "_sort" => {
                    for key in value.split(',').filter(|k| !k.is_empty()) {
                        let (descending, param) = match key.strip_prefix('-') {
                            Some(param) => (true, param),
                            None => (false, key),
                        };
                        let sortable = matches!(param, "_id" | "_lastUpdated")
                            || params::search_param(resource_type, param).is_some_and(|def| {
                                matches!(def.kind, ParamKind::Date | ParamKind::String)
                            });
                        if !sortable {
                            return Err(RecordError::invalid(format!(
                                "cannot sort {resource_type} by `{param}`: sort by _id, _lastUpdated or a date or string parameter"
                            )));
                        }
                        request.sort.push(SortKey {
                            param: param.to_owned(),
                            descending,
                        });
                    }
                }
                "_include" => {
                    let (source, param) = value.split_once(':').ok_or_else(|| {
                        RecordError::invalid(format!(
                            "_include must be Type:parameter, not `{value}`"
                        ))
                    })?;
                    let param = param.split(':').next().unwrap_or(param);
                    let def = params::search_param(source, param)
                        .filter(|def| def.kind == ParamKind::Reference && source == resource_type)
                        .ok_or_else(|| {
                            RecordError::invalid(format!(
                                "_include `{value}` is not a reference parameter of {resource_type}"
                            ))
                        })?;
                    request.includes.push(def);
                }
                "_summary" => match value.as_str() {
                    "count" => request.summary_count = true,
                    "false" => {}
                    other => {
                        return Err(RecordError::invalid(format!(
                            "_summary={other} is not supported; use _summary=count"
                        )));
                    }
                },
                "_format" => {
                    if !value.contains("json") {
                        return Err(RecordError::invalid(
                            "_format: this server speaks JSON only",
                        ));
                    }
                }
                _ => request
                    .clauses
                    .push(parse_clause(resource_type, name, value)?),
            }
        }
        Ok(request)
    }
}

fn parse_clause(resource_type: &str, name: &str, value: &str) -> Result<Clause, RecordError> {
    let (param, modifier) = match name.split_once(':') {
        Some((param, modifier)) => (param, Some(modifier)),
        None => (name, None),
    };
    if param.contains('.') {
        return Err(RecordError::invalid(format!(
            "chained parameter `{name}` is not supported"
        )));
    }
    let bad_value = |what: &str| {
        RecordError::invalid(format!(
            "{resource_type} search `{name}`: {what}, not `{value}`"
        ))
    };
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(bad_value(":missing takes true or false")),
        };
        if param != "_id" && params::search_param(resource_type, param).is_none() {
            return Err(unknown_param(resource_type, param));
        }
        return Ok(Clause {
            param: param.to_owned(),
            values: vec![ClauseValue::Missing(missing)],
        });
    }
    let mut values = Vec::new();
    match param {
        "_id" => {
            no_modifier(name, modifier)?;
            for id in value.split(',') {
                values.push(ClauseValue::Id(id.to_owned()));
            }
        }
        "_lastUpdated" => {
            no_modifier(name, modifier)?;
            for item in value.split(',') {
                let (prefix, range) = parse_date_value(item).ok_or_else(|| {
                    bad_value("a date with an optional prefix eq, ne, lt, gt, le, ge, sa, eb")
                })?;
                values.push(ClauseValue::LastUpdated(prefix, range));
            }
        }
        _ => {
            let def = params::search_param(resource_type, param)
                .ok_or_else(|| unknown_param(resource_type, param))?;
            for item in split_values(value) {
                values.push(match def.kind {
                    ParamKind::Token => {
                        let negate = match modifier {
                            None => false,
                            Some("not") => true,
                            Some(other) => return Err(bad_modifier(name, other)),
                        };
                        let (system, code) = match item.split_once('|') {
                            None => (TokenSystem::Any, Some(item.clone())),
                            Some(("", code)) => (TokenSystem::None, Some(code.to_owned())),
                            Some((system, "")) => (TokenSystem::Is(system.to_owned()), None),
                            Some((system, code)) => {
                                (TokenSystem::Is(system.to_owned()), Some(code.to_owned()))
                            }
                        };
                        if code.as_deref() == Some("") {
                            return Err(bad_value("a token `[system|]code`"));
                        }
                        ClauseValue::Token {
                            system,
                            code,
                            negate,
                        }
                    }
                    ParamKind::String => {
                        let mode = match modifier {
                            None => StringMode::StartsWith,
                            Some("exact") => StringMode::Exact,
                            Some("contains") => StringMode::Contains,
                            Some(other) => return Err(bad_modifier(name, other)),
                        };
                        if item.trim().is_empty() {
                            return Err(bad_value("a non-empty string"));
                        }
                        ClauseValue::String {
                            value: params::normalize(&item),
                            mode,
                        }
                    }
                    ParamKind::Date => {
                        no_modifier(name, modifier)?;
                        let (prefix, range) = parse_date_value(&item).ok_or_else(|| {
                            bad_value(
                                "a date with an optional prefix eq, ne, lt, gt, le, ge, sa, eb",
                            )
                        })?;
                        ClauseValue::Date(prefix, range)
                    }
                    ParamKind::Reference => {
                        let (target_type, id) = match (modifier, params::parse_reference(&item)) {
                            (Some(modifier), _) if crate::types::is_resource_type(modifier) => {
                                (Some(modifier.to_owned()), item.clone())
                            }
                            (Some(other), _) => return Err(bad_modifier(name, other)),
                            (None, Some((target_type, id))) => (Some(target_type), id),
                            (None, None) => (def.target.map(str::to_owned), item.clone()),
                        };
                        if !crate::types::is_valid_id(&id) {
                            return Err(bad_value("a reference `[Type/]id`"));
                        }
                        if let (Some(wanted), Some(given)) = (def.target, target_type.as_deref())
                            && wanted != given
                        {
                            return Err(bad_value(&format!("a reference to {wanted}")));
                        }
                        ClauseValue::Reference { target_type, id }
                    }
                });
            }
        }
    }
    Ok(Clause {
        param: param.to_owned(),
        values,
    })
}

/// Splits ORed values at commas not escaped as `\,`.
fn split_values(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.last_mut().expect("non-empty").push(next);
                }
            }
            ',' => out.push(String::new()),
            c => out.last_mut().expect("non-empty").push(c),
        }
    }
    out
}

fn parse_date_value(item: &str) -> Option<(Prefix, DateRange)> {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
    ];
    let (prefix, rest) = prefixes
        .iter()
        .find_map(|(text, prefix)| item.strip_prefix(text).map(|rest| (*prefix, rest)))
        .unwrap_or((Prefix::Eq, item));
    Some((prefix, date::parse(rest)?))
}

fn no_modifier(name: &str, modifier: Option<&str>) -> Result<(), RecordError> {
    match modifier {
        None => Ok(()),
        Some(other) => Err(bad_modifier(name, other)),
    }
}

fn bad_modifier(name: &str, modifier: &str) -> RecordError {
    RecordError::invalid(format!(
        "modifier `:{modifier}` is not supported on `{name}`"
    ))
}

fn unknown_param(resource_type: &str, param: &str) -> RecordError {
    let mut known: Vec<&str> = params::search_params_of(resource_type)
        .map(|def| def.name)
        .collect();
    known.extend(["_id", "_lastUpdated"]);
    known.extend(RESULT_PARAMS);
    RecordError::invalid(format!(
        "unknown search parameter `{param}` for {resource_type}; supported: {}",
        known.join(", ")
    ))
}

impl ClauseValue {
    /// Whether a resource with `id`, `last_updated` and these index values of the clause's
    /// parameter matches this value. (The memory store's search; the SQL store says the same
    /// in SQL.)
    pub fn matches(&self, id: &str, last_updated: i64, values: &[&IndexValue]) -> bool {
        match self {
            ClauseValue::Id(wanted) => wanted == id,
            ClauseValue::LastUpdated(prefix, range) => prefix.matches(
                DateRange {
                    low: last_updated,
                    high: last_updated,
                },
                *range,
            ),
            ClauseValue::Missing(missing) => values.is_empty() == *missing,
            ClauseValue::Token {
                system,
                code,
                negate,
            } => {
                let hit = values.iter().any(|value| match value {
                    IndexValue::Token { system: s, code: c } => {
                        let system_ok = match system {
                            TokenSystem::Any => true,
                            TokenSystem::None => s.is_none(),
                            TokenSystem::Is(wanted) => s.as_deref() == Some(wanted),
                        };
                        system_ok && code.as_ref().is_none_or(|wanted| wanted == c)
                    }
                    _ => false,
                });
                hit != *negate
            }
            ClauseValue::String {
                value: wanted,
                mode,
            } => values.iter().any(|value| match value {
                IndexValue::String(text) => match mode {
                    StringMode::StartsWith => text.starts_with(wanted.as_str()),
                    StringMode::Contains => text.contains(wanted.as_str()),
                    // The index keeps the lowercase form, so `:exact` is a whole-string match
                    // that ignores case (documented in docs/fhir-record.md).
                    StringMode::Exact => text == wanted,
                },
                _ => false,
            }),
            ClauseValue::Date(prefix, range) => values.iter().any(|value| match value {
                IndexValue::Date(resource) => prefix.matches(*resource, *range),
                _ => false,
            }),
            ClauseValue::Reference {
                target_type,
                id: wanted,
            } => values.iter().any(|value| match value {
                IndexValue::Reference {
                    target_type: t,
                    target_id,
                } => target_id == wanted && target_type.as_ref().is_none_or(|wanted| wanted == t),
                _ => false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn observation_search_parses() {
        let request = SearchRequest::parse(
            "Observation",
            &pairs(&[
                ("patient", "Patient/p1"),
                ("code", "http://loinc.org|8867-4,http://loinc.org|9279-1"),
                ("date", "ge2013-01-01"),
                ("_sort", "-date"),
                ("_count", "10"),
                ("_include", "Observation:patient"),
            ]),
        )
        .unwrap();
        assert_eq!(request.clauses.len(), 3);
        assert_eq!(request.clauses[1].values.len(), 2);
        assert_eq!(
            request.sort,
            vec![SortKey {
                param: "date".into(),
                descending: true
            }]
        );
        assert_eq!(request.count, 10);
        assert_eq!(request.includes[0].name, "patient");
        assert!(matches!(
            request.clauses[2].values[0],
            ClauseValue::Date(Prefix::Ge, _)
        ));
    }

    #[test]
    fn bad_values_and_unknown_params_are_400() {
        for (name, value) in [
            ("date", "yesterday"),
            ("date", "xx2013"),
            ("nonsense", "1"),
            ("code:fuzzy", "1"),
            ("patient", "Device/1"),
            ("_count", "-1"),
            ("_sort", "code"),
            ("subject.name", "peter"),
            ("_summary", "text"),
        ] {
            let error = SearchRequest::parse("Observation", &pairs(&[(name, value)])).unwrap_err();
            assert_eq!(error.status, 400, "{name}={value}");
        }
        assert_eq!(SearchRequest::parse("Nope", &[]).unwrap_err().status, 404);
    }

    #[test]
    fn date_prefixes_follow_the_spec() {
        let day = date::parse("2013-03-04").unwrap();
        let inside = date::parse("2013-03-04T10:00:00Z").unwrap();
        let after = date::parse("2013-03-05T10:00:00Z").unwrap();
        let before = date::parse("2013-03-03T10:00:00Z").unwrap();
        assert!(Prefix::Eq.matches(inside, day));
        assert!(!Prefix::Eq.matches(after, day));
        assert!(Prefix::Ne.matches(after, day));
        assert!(Prefix::Gt.matches(after, day) && !Prefix::Gt.matches(inside, day));
        assert!(Prefix::Lt.matches(before, day) && !Prefix::Lt.matches(inside, day));
        assert!(
            Prefix::Ge.matches(inside, day)
                && Prefix::Ge.matches(after, day)
                && !Prefix::Ge.matches(before, day)
        );
        assert!(
            Prefix::Le.matches(inside, day)
                && Prefix::Le.matches(before, day)
                && !Prefix::Le.matches(after, day)
        );
        assert!(Prefix::Sa.matches(after, day) && !Prefix::Sa.matches(inside, day));
        assert!(Prefix::Eb.matches(before, day) && !Prefix::Eb.matches(inside, day));
    }

    #[test]
    fn tokens_with_and_without_system() {
        let coded = IndexValue::Token {
            system: Some("http://loinc.org".into()),
            code: "8867-4".into(),
        };
        let values = [&coded];
        let token = |s: TokenSystem, c: Option<&str>| ClauseValue::Token {
            system: s,
            code: c.map(str::to_owned),
            negate: false,
        };
        assert!(token(TokenSystem::Any, Some("8867-4")).matches("x", 0, &values));
        assert!(
            token(TokenSystem::Is("http://loinc.org".into()), Some("8867-4"))
                .matches("x", 0, &values)
        );
        assert!(token(TokenSystem::Is("http://loinc.org".into()), None).matches("x", 0, &values));
        assert!(!token(TokenSystem::None, Some("8867-4")).matches("x", 0, &values));
        assert!(
            !token(
                TokenSystem::Is("http://snomed.info/sct".into()),
                Some("8867-4")
            )
            .matches("x", 0, &values)
        );
    }
}
