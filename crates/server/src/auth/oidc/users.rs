//! Who an identity is: the metaward user linked to its subject (or named by a configured claim,
//! then linked), with the provider's groups deciding role and wards when group rules are
//! configured.

use serde_json::Value;
use store::{Store, StoreError, UserRecord};

use super::super::{UserError, create_user, valid_user_name};
use super::{IdClaims, OidcConfig, digest};

/// Why an identity did not become a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No user is linked to the identity (nor named by the configured claim), and no group
    /// rule matches.
    Unlinked,
    /// The user named by the claim is linked to another identity.
    LinkedElsewhere,
    Disabled,
    /// The user's role came from the provider's groups, and the identity is in none of the
    /// configured groups any more.
    NoGroup,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Unlinked => "unlinked",
            Refusal::LinkedElsewhere => "linked_elsewhere",
            Refusal::Disabled => "disabled",
            Refusal::NoGroup => "no_group",
        }
    }
}

/// What signing in changed about the user, for the audit trail.
#[derive(Debug, PartialEq, Eq)]
pub enum AccessChange {
    None,
    /// Created from a group rule, linked to the identity.
    Created {
        group: String,
    },
    /// Role or wards set from a group rule.
    Updated {
        group: String,
    },
}

/// The user an identity signs in as (linked to it from then on when found by the username
/// claim), with the provider's groups applied when configured: a
/// matching group rule sets the role and wards of the user found (or creates and links one,
/// named by the username claim when that name is free, else `sso-…`); a user whose access came
/// from groups is refused once the identity is in none of them; otherwise as [`find_user`].
/// Runs on the writer connection; CPU-bound when it creates a user (hashing a password nobody
/// is shown: such users sign in through the provider only).
pub fn sign_in_user(
    store: &mut Store,
    identity: &IdClaims,
    config: &OidcConfig,
    now_ms: i64,
) -> Result<Result<(UserRecord, AccessChange), Refusal>, UserError> {
    let rule = config.group_rule(identity).cloned();
    let found = find_user(store, identity, config.username_claim.as_deref())?;
    let (user, change) = match (found, rule) {
        (Ok(user), Some(rule)) => {
            let same = user.oidc_managed
                && user.role == rule.role.key()
                && sorted(user.wards.as_ref()) == sorted(rule.wards.as_ref());
            if same {
                (user, AccessChange::None)
            } else {
                store.set_user_access(&user.name, rule.role.key(), rule.wards.as_deref(), true)?;
                let user = store.user(&user.name)?.ok_or(StoreError::NotFound {
                    what: "user",
                    id: user.name.clone(),
                })?;
                (user, AccessChange::Updated { group: rule.group })
            }
        }
        (Ok(user), None) if user.oidc_managed && !config.groups.is_empty() => {
            return Ok(Err(Refusal::NoGroup));
        }
        (Ok(user), None) => (user, AccessChange::None),
        (Err(Refusal::Unlinked), Some(rule)) => {
            let name = provisioned_name(store, identity, config.username_claim.as_deref())?;
            create_user(store, &name, rule.role.key(), rule.wards.as_deref(), now_ms)?;
            store.set_user_oidc_subject(&name, Some(&identity.sub))?;
            store.set_user_access(&name, rule.role.key(), rule.wards.as_deref(), true)?;
            let user = store.user(&name)?.ok_or(StoreError::NotFound {
                what: "user",
                id: name.clone(),
            })?;
            (user, AccessChange::Created { group: rule.group })
        }
        (Err(refusal), _) => return Ok(Err(refusal)),
    };
    // Found by the username claim: linked now, so that the name alone never maps another
    // identity to this user later (a reassigned user name at the provider).
    if user.oidc_subject.is_none() {
        store.set_user_oidc_subject(&user.name, Some(&identity.sub))?;
        let linked = store.user(&user.name)?.ok_or(StoreError::NotFound {
            what: "user",
            id: user.name.clone(),
        })?;
        return Ok(Ok((linked, change)));
    }
    Ok(Ok((user, change)))
}

/// Wards as a set, to compare (`None`: every ward).
fn sorted(wards: Option<&Vec<String>>) -> Option<Vec<String>> {
    wards.map(|wards| {
        let mut wards = wards.clone();
        wards.sort();
        wards.dedup();
        wards
    })
}

/// A free user name for an identity: its username claim's value, else `sso-` and its subject
/// (or, when the subject is not a valid name, a hash of it).
fn provisioned_name(
    store: &Store,
    identity: &IdClaims,
    username_claim: Option<&str>,
) -> Result<String, StoreError> {
    if let Some(name) = username_claim.and_then(|claim| claimed_name(identity, claim))
        && store.user(name)?.is_none()
    {
        return Ok(name.to_owned());
    }
    let plain = format!("sso-{}", identity.sub);
    if valid_user_name(&plain) && store.user(&plain)?.is_none() {
        return Ok(plain);
    }
    let hash: String = digest(&identity.sub)[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(format!("sso-{hash}"))
}

/// The metaward user an identity maps to: the user whose linked subject it is; else, when a
/// username claim is configured, the user of that name (unless linked to another subject).
pub fn find_user(
    store: &Store,
    identity: &IdClaims,
    username_claim: Option<&str>,
) -> Result<Result<UserRecord, Refusal>, StoreError> {
    let user = match store.user_by_oidc_subject(&identity.sub)? {
        Some(user) => Some(user),
        None => match username_claim.and_then(|claim| claimed_name(identity, claim)) {
            Some(name) => match store.user(name)? {
                Some(user)
                    if user
                        .oidc_subject
                        .as_ref()
                        .is_some_and(|sub| *sub != identity.sub) =>
                {
                    return Ok(Err(Refusal::LinkedElsewhere));
                }
                found => found,
            },
            None => None,
        },
    };
    Ok(match user {
        None => Err(Refusal::Unlinked),
        Some(user) if user.disabled => Err(Refusal::Disabled),
        Some(user) => Ok(user),
    })
}

/// The user name a claim gives; an email only when the provider verified it.
fn claimed_name<'a>(identity: &'a IdClaims, claim: &str) -> Option<&'a str> {
    if claim == "email" && identity.claims.get("email_verified") != Some(&Value::Bool(true)) {
        return None;
    }
    identity.text(claim).filter(|name| valid_user_name(name))
}

/// How an identity appears in the audit trail when it maps to no user.
pub(super) fn identity_actor(identity: &IdClaims) -> String {
    let sub: String = identity
        .sub
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(128)
        .collect();
    format!("oidc:{sub}")
}
