//! Configuration, layered: defaults < TOML file (`--config`) < environment (`METAWARD_…`) <
//! command-line flags. Clap reads the last two; this module merges in the file and defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
pub const DEFAULT_MQTT: &str = "127.0.0.1:1883";
pub const DEFAULT_DATA: &str = "./metaward-data";
pub const DEFAULT_MLLP: &str = "127.0.0.1:2575";

/// Listener addresses and the data directory; flags override the environment, which
/// overrides the file.
#[derive(Args, Clone, Debug, Default)]
pub struct ListenArgs {
    /// HTTP address: web page, REST API, live stream, metrics [default: 127.0.0.1:8080]
    #[arg(long, env = "METAWARD_HTTP")]
    pub http: Option<SocketAddr>,
    /// MQTT address of the embedded broker [default: 127.0.0.1:1883]
    #[arg(long, env = "METAWARD_MQTT")]
    pub mqtt: Option<SocketAddr>,
    /// Data directory: the durable log and the SQL store [default: ./metaward-data]
    #[arg(long, env = "METAWARD_DATA")]
    pub data: Option<PathBuf>,
    /// HL7 v2 over MLLP address (IHE PCD-01, ADT) [default: 127.0.0.1:2575]
    #[arg(long, env = "METAWARD_MLLP")]
    pub mllp: Option<SocketAddr>,
    /// TOML configuration file
    #[arg(long, env = "METAWARD_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http: Option<SocketAddr>,
    mqtt: Option<SocketAddr>,
    data: Option<PathBuf>,
    mllp: Option<SocketAddr>,
}

impl ListenArgs {
    pub fn resolve(&self) -> anyhow::Result<server::ServerConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let config = server::ServerConfig {
            http: self
                .http
                .or(file.http)
                .unwrap_or_else(|| DEFAULT_HTTP.parse().expect("valid default")),
            mqtt: self
                .mqtt
                .or(file.mqtt)
                .unwrap_or_else(|| DEFAULT_MQTT.parse().expect("valid default")),
            data_dir: self
                .data
                .clone()
                .or(file.data)
                .unwrap_or_else(|| DEFAULT_DATA.into()),
            mllp: self
                .mllp
                .or(file.mllp)
                .unwrap_or_else(|| DEFAULT_MLLP.parse().expect("valid default")),
        };
        // Authentication does not exist yet, so nothing may listen beyond this machine.
        for (name, addr) in [
            ("http", config.http),
            ("mqtt", config.mqtt),
            ("mllp", config.mllp),
        ] {
            if !addr.ip().is_loopback() {
                anyhow::bail!(
                    "refusing to listen on {addr} ({name}): binding beyond loopback requires authentication, which this build does not have yet"
                );
            }
        }
        Ok(config)
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metaward.toml");
        std::fs::write(
            &path,
            "http = \"127.0.0.1:9000\"\nmqtt = \"127.0.0.1:9001\"\nmllp = \"127.0.0.1:9002\"\n",
        )
        .unwrap();
        let args = ListenArgs {
            http: Some("127.0.0.1:9100".parse().unwrap()),
            config: Some(path),
            ..ListenArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.http.port(), 9100);
        assert_eq!(config.mqtt.port(), 9001);
        assert_eq!(config.mllp.port(), 9002);
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA));
    }

    #[test]
    fn unknown_keys_and_public_addresses_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "htp = \"127.0.0.1:9000\"\n").unwrap();
        let args = ListenArgs {
            config: Some(path),
            ..ListenArgs::default()
        };
        assert!(args.resolve().is_err());
        let args = ListenArgs {
            http: Some("0.0.0.0:8080".parse().unwrap()),
            ..ListenArgs::default()
        };
        let error = args.resolve().unwrap_err().to_string();
        assert!(error.contains("requires authentication"), "{error}");
        let args = ListenArgs {
            mllp: Some("0.0.0.0:2575".parse().unwrap()),
            ..ListenArgs::default()
        };
        let error = args.resolve().unwrap_err().to_string();
        assert!(error.contains("(mllp)"), "{error}");
    }
}
