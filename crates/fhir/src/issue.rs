//! What was wrong with a resource, in FHIR's terms: an HTTP status, an IssueType code, a
//! diagnostic a device integrator can act on, the FHIRPath of the offending element, and a
//! short stable reason used as the metrics label and dead-letter reason.

use crate::types::{OperationOutcome, OperationOutcomeIssue};

/// The IssueType codes metaward answers with (http://hl7.org/fhir/issue-type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueCode {
    /// Content invalid against the specification (unparseable, wrong type).
    Invalid,
    /// A required element is missing.
    Required,
    /// An element's value is not acceptable.
    Value,
    /// A code is not known to metaward (metric, body site, unit).
    CodeInvalid,
    /// Valid FHIR that metaward does not support (an interaction, a value type).
    NotSupported,
    /// A referenced resource is not known.
    NotFound,
    /// The request is too large to process.
    TooCostly,
    /// The server could not do what it should have (durability failed).
    Exception,
    /// The caller is authenticated but may not do this (a device speaking for another).
    Forbidden,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::NotSupported => "not-supported",
            IssueCode::NotFound => "not-found",
            IssueCode::TooCostly => "too-costly",
            IssueCode::Exception => "exception",
            IssueCode::Forbidden => "forbidden",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    /// 400 unparseable, 404 unknown resource, 415 wrong media type, 422 unprocessable content.
    pub status: u16,
    pub code: IssueCode,
    pub diagnostics: String,
    /// FHIRPath of the offending element, rooted at the resource type (`Observation.code`).
    pub expression: Option<String>,
    /// A short stable label for metrics and dead letters (`json`, `unknown_code`, `unit`, ...).
    pub reason: &'static str,
}

impl Issue {
    pub fn new(
        status: u16,
        code: IssueCode,
        reason: &'static str,
        expression: Option<&str>,
        diagnostics: impl Into<String>,
    ) -> Issue {
        Issue {
            status,
            code,
            diagnostics: diagnostics.into(),
            expression: expression.map(str::to_owned),
            reason,
        }
    }

    /// 422: understood, but not processable (unknown code, unit, missing element).
    pub fn unprocessable(
        code: IssueCode,
        reason: &'static str,
        expression: &str,
        diagnostics: impl Into<String>,
    ) -> Issue {
        Issue::new(422, code, reason, Some(expression), diagnostics)
    }

    /// Re-roots the expression at a Bundle entry: `Observation.code` becomes
    /// `Bundle.entry[2].resource.code`.
    pub fn in_entry(mut self, index: usize) -> Issue {
        let root = format!("Bundle.entry[{index}].resource");
        self.expression = Some(match self.expression.take() {
            Some(path) => match path.split_once('.') {
                Some((_, rest)) => format!("{root}.{rest}"),
                None => root,
            },
            None => root,
        });
        self
    }

    pub fn outcome_issue(&self) -> OperationOutcomeIssue {
        OperationOutcomeIssue {
            severity: if self.status >= 500 { "fatal" } else { "error" }.into(),
            code: self.code.as_str().into(),
            diagnostics: Some(self.diagnostics.clone()),
            expression: self.expression.iter().cloned().collect(),
        }
    }

    pub fn to_outcome(&self) -> OperationOutcome {
        OperationOutcome::new(vec![self.outcome_issue()])
    }
}

/// A serde error of a resource, with the FHIRPath of where it happened (`Observation.valueQuantity.value`).
pub fn from_serde(
    resource_type: &str,
    error: serde_path_to_error::Error<serde_json::Error>,
) -> Issue {
    let mut expression = resource_type.to_owned();
    for segment in error.path().iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => {
                expression.push_str(&format!("[{index}]"))
            }
            serde_path_to_error::Segment::Map { key } => {
                expression.push('.');
                expression.push_str(key);
            }
            serde_path_to_error::Segment::Enum { variant } => {
                expression.push('.');
                expression.push_str(variant);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let inner = error.into_inner();
    // A missing field is reported at its parent; name it in the path like FHIRPath would.
    let message = inner.to_string();
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        expression.push('.');
        expression.push_str(field);
        return Issue::new(
            422,
            IssueCode::Required,
            "required",
            Some(&expression),
            format!("{expression} is required"),
        );
    }
    Issue::new(
        400,
        IssueCode::Invalid,
        "structure",
        Some(&expression),
        format!("{expression}: {message}"),
    )
}

/// Deserializes a resource of `resource_type`, reporting problems with their FHIRPath.
pub fn parse_resource<T: serde::de::DeserializeOwned>(
    resource_type: &str,
    json: serde_json::Value,
) -> Result<T, Issue> {
    serde_path_to_error::deserialize(json).map_err(|error| from_serde(resource_type, error))
}
