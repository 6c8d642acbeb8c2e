//! `metaward token …`: create, list, rotate and revoke API tokens (docs/security.md) directly on a
//! data directory's store, safe beside a running server (SQLite WAL), which looks every token
//! up at each request: a rotation or revocation here holds at its next request.
//!
//! A new or rotated token's secret is printed once, on stdout, alone on its line after the
//! description, so a script can take it (`| tail -n1`); it is never kept.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use server::auth::tokens::{self, NewToken};

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    /// Data directory of the server [default: ./metaward-data]
    #[arg(long, env = "METAWARD_DATA", global = true)]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; prints its secret once
    Create {
        /// A name for the token (letters, digits, `.`, `_`, `-`, `@`)
        name: String,
        /// A device token: the device may post only its own Observations to /fhir
        #[arg(long, required_unless_present = "user")]
        device: Option<String>,
        /// A service token acting as this user, with the user's role and wards
        #[arg(long, conflicts_with = "device")]
        user: Option<String>,
        /// Lifetime in days [default: 90 for service tokens, none for device tokens]
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List tokens (never their secrets)
    List,
    /// Give a token a new secret (printed once); the old one stops working
    Rotate {
        name: String,
        /// Lifetime in days from now [default: as at creation]
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token: it stops working at its next request
    Revoke { name: String },
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let mut store = crate::user::open(args.data)?;
    let now_ms = server::pipeline::now().millis();
    match args.command {
        TokenCommand::Create {
            name,
            device,
            user,
            expires_in_days,
        } => {
            let kind = match (device, user) {
                (Some(device), None) => NewToken::Device(device),
                (None, Some(user)) => NewToken::Service(user),
                _ => anyhow::bail!("say whom the token is for: --device ID or --user NAME"),
            };
            let (record, secret) = tokens::create(&store, &name, kind, expires_in_days, now_ms)?;
            crate::user::audit_cli(&mut store, "metaward token create", &name)?;
            println!("created token {}", tokens::token_json(&record));
            println!("{secret}");
        }
        TokenCommand::List => {
            for record in store.api_tokens()? {
                println!("{}", tokens::token_json(&record));
            }
        }
        TokenCommand::Rotate {
            name,
            expires_in_days,
        } => {
            let (record, secret) = tokens::rotate(&store, &name, expires_in_days, now_ms)?;
            crate::user::audit_cli(&mut store, "metaward token rotate", &name)?;
            println!("rotated token {}", tokens::token_json(&record));
            println!("{secret}");
        }
        TokenCommand::Revoke { name } => {
            store.revoke_api_token(&name)?;
            crate::user::audit_cli(&mut store, "metaward token revoke", &name)?;
            println!("revoked {name}");
        }
    }
    Ok(())
}
