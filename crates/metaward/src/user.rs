//! `metaward user …` and `metaward audit …`: manage users and check the audit trail, directly on
//! a data directory's store (safe beside a running server: SQLite WAL).
//!
//! First run: there is no default user and no default password anywhere. The first admin is
//! created with `metaward user create NAME --admin`, which prints a generated password once.
//! A user disabled here can no longer sign in; a running server ends their session at its next
//! refresh (at most 15 minutes; `POST /api/v1/users/{name}/disable` ends it at once).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use store::Store;

#[derive(Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
    /// Data directory of the server [default: ./metaward-data]
    #[arg(long, env = "METAWARD_DATA", global = true)]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; prints a generated password once
    Create {
        name: String,
        /// admin, physician, nurse or observer
        #[arg(long, required_unless_present = "admin")]
        role: Option<String>,
        /// A ward the user may see (repeat for several)
        #[arg(long = "ward")]
        wards: Vec<String>,
        /// Every ward, now and future
        #[arg(long, conflicts_with = "wards")]
        all_wards: bool,
        /// Shorthand for --role admin --all-wards (the first admin)
        #[arg(long, conflicts_with_all = ["role", "wards"])]
        admin: bool,
        /// Single sign-on: the identity provider's subject (`sub`) that signs in as this user
        #[arg(long)]
        oidc_subject: Option<String>,
    },
    /// Single sign-on: let the identity provider's subject (`sub`) sign in as this user
    Link {
        name: String,
        #[arg(long)]
        oidc_subject: String,
    },
    /// Single sign-on: remove the user's link to an identity
    Unlink { name: String },
    /// List users (never their passwords)
    List,
    /// Stop a user from signing in
    Disable { name: String },
    /// Let a disabled user sign in again
    Enable { name: String },
    /// Give a user a new generated password (printed once) and clear a lockout
    Reset { name: String },
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
    /// Data directory of the server [default: ./metaward-data]
    #[arg(long, env = "METAWARD_DATA", global = true)]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; names the first broken entry
    Verify,
    /// Print the trail as a FHIR R4 Bundle of AuditEvent resources
    Export {
        /// Entries after this sequence number
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

pub(crate) fn open(data: Option<PathBuf>) -> anyhow::Result<Store> {
    let data = data.unwrap_or_else(|| crate::config::DEFAULT_DATA.into());
    std::fs::create_dir_all(&data)
        .with_context(|| format!("creating data directory {}", data.display()))?;
    open_store(&data)
}

fn open_store(data: &Path) -> anyhow::Result<Store> {
    Store::open(data.join("metaward.sqlite")).context("opening the SQL store")
}

fn now_ms() -> i64 {
    server::pipeline::now().millis()
}

/// User changes from the command line go to the audit trail too: who ran it (the OS user), from
/// this machine.
fn audit_user_cli(store: &mut Store, what: &str, subject: &str) -> anyhow::Result<()> {
    audit_cli(store, &format!("metaward user {what}"), subject)
}

/// A change made by `command` (e.g. `metaward token revoke`) on `subject`, in the audit trail.
pub(crate) fn audit_cli(store: &mut Store, command: &str, subject: &str) -> anyhow::Result<()> {
    let os_user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    store.append_audit(&[store::AuditEntry {
        time_ms: now_ms(),
        actor: format!("cli:{os_user}"),
        role: None,
        source: "local".into(),
        action: "change".into(),
        what: format!("{command} {subject}"),
        patient_id: None,
        outcome: "success".into(),
    }])?;
    Ok(())
}

pub fn run(args: UserArgs) -> anyhow::Result<()> {
    let mut store = open(args.data)?;
    match args.command {
        UserCommand::Create {
            name,
            role,
            wards,
            all_wards,
            admin,
            oidc_subject,
        } => {
            let role = if admin {
                "admin".to_owned()
            } else {
                role.expect("clap requires --role without --admin")
            };
            anyhow::ensure!(
                admin || all_wards || !wards.is_empty(),
                "say which wards the user may see: --ward ID (repeatable) or --all-wards"
            );
            let wards = (!(admin || all_wards)).then_some(wards);
            let password =
                server::auth::create_user(&mut store, &name, &role, wards.as_deref(), now_ms())?;
            audit_user_cli(&mut store, "create", &name)?;
            println!("created user {name} ({role}); password (shown once): {password}");
            if let Some(subject) = oidc_subject {
                link(&mut store, &name, &subject)?;
            }
        }
        UserCommand::Link { name, oidc_subject } => link(&mut store, &name, &oidc_subject)?,
        UserCommand::Unlink { name } => {
            store.set_user_oidc_subject(&name, None)?;
            audit_cli(&mut store, "unlink", &name)?;
            println!("unlinked {name} from single sign-on");
        }
        UserCommand::List => {
            for user in store.users()? {
                println!("{}", server::auth::user_json(&user));
            }
        }
        UserCommand::Disable { name } => {
            store.set_user_disabled(&name, true)?;
            // A running server ends them at their next refresh; a restart does not revive them.
            store.delete_user_sessions(&name)?;
            audit_user_cli(&mut store, "disable", &name)?;
            println!("disabled {name}");
        }
        UserCommand::Enable { name } => {
            store.set_user_disabled(&name, false)?;
            audit_user_cli(&mut store, "enable", &name)?;
            println!("enabled {name}");
        }
        UserCommand::Reset { name } => {
            let password = server::auth::reset_password(&store, &name, now_ms())?;
            store.delete_user_sessions(&name)?;
            audit_user_cli(&mut store, "reset", &name)?;
            println!("new password for {name} (shown once): {password}");
        }
    }
    Ok(())
}

/// Links a user to an identity of the OIDC provider.
fn link(store: &mut Store, name: &str, subject: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !subject.is_empty() && subject.len() <= 255,
        "an OIDC subject is 1 to 255 characters (the provider's `sub` claim)"
    );
    store.set_user_oidc_subject(name, Some(subject))?;
    audit_cli(store, "link", name)?;
    println!("linked {name} to the single sign-on subject {subject}");
    Ok(())
}

pub fn run_audit(args: AuditArgs) -> anyhow::Result<()> {
    let store = open(args.data)?;
    match args.command {
        AuditCommand::Verify => match store.verify_audit()? {
            Ok(count) => println!("audit trail intact: {count} entries"),
            Err(seq) => anyhow::bail!(
                "audit trail broken at entry {seq}: it was changed, removed or inserted after it was written"
            ),
        },
        AuditCommand::Export { after } => {
            let mut records = Vec::new();
            let mut cursor = after;
            loop {
                let batch = store.audit_entries(cursor, 10_000)?;
                let Some(last) = batch.last() else { break };
                cursor = last.seq;
                records.extend(batch);
            }
            println!("{}", server::auth::audit::audit_bundle(&records));
        }
    }
    Ok(())
}
