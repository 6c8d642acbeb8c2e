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
    /// Seconds of silence after which a device is marked offline [default: 30]
    #[arg(long, env = "METAWARD_DEVICE_OFFLINE_AFTER")]
    pub device_offline_after: Option<u32>,
    /// Alarm limits, delays and lifecycle timings (TOML, the shape of the shipped defaults in
    /// crates/clinical/data/alarm_limits.toml) [default: the shipped defaults]
    #[arg(long, env = "METAWARD_ALARM_LIMITS")]
    pub alarm_limits: Option<PathBuf>,
    /// TOML configuration file
    #[arg(long, env = "METAWARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Device authentication on the embedded broker: optional or required [default: optional]
    #[arg(long, env = "METAWARD_MQTT_DEVICE_AUTH")]
    pub mqtt_device_auth: Option<String>,
    /// Also take device data from an external MQTT broker at host:port
    #[arg(long, env = "METAWARD_MQTT_EXTERNAL_BROKER")]
    pub mqtt_external_broker: Option<String>,
    /// This node's client id at the external broker (stable across restarts, unique per node)
    #[arg(long, env = "METAWARD_MQTT_EXTERNAL_CLIENT_ID")]
    pub mqtt_external_client_id: Option<String>,
    /// Shared-subscription group at the external broker [default: metaward]
    #[arg(long, env = "METAWARD_MQTT_EXTERNAL_SHARE_GROUP")]
    pub mqtt_external_share_group: Option<String>,
    /// Username at the external broker
    #[arg(long, env = "METAWARD_MQTT_EXTERNAL_USERNAME")]
    pub mqtt_external_username: Option<String>,
    /// Password at the external broker (prefer the environment or the file to a flag)
    #[arg(long, env = "METAWARD_MQTT_EXTERNAL_PASSWORD", hide_env_values = true)]
    pub mqtt_external_password: Option<String>,
    /// HTTPS: the certificate chain (PEM) [default: plain HTTP]
    #[arg(long, env = "METAWARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: the certificate's private key (PEM, readable only by its owner)
    #[arg(long, env = "METAWARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also MQTT over TLS on the broker's address, with the same certificate
    #[arg(long, env = "METAWARD_MQTT_TLS")]
    pub mqtt_tls: bool,
    /// Also HL7 MLLP over TLS, with the same certificate
    #[arg(long, env = "METAWARD_MLLP_TLS")]
    pub mllp_tls: bool,
    /// Single sign-on: the OpenID Connect issuer URL (https; http only on loopback)
    #[arg(long, env = "METAWARD_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Single sign-on: this server's client id at the provider
    #[arg(long, env = "METAWARD_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// Single sign-on: the client secret, for a confidential client (prefer the environment or
    /// the file to a flag)
    #[arg(long, env = "METAWARD_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// Single sign-on: this server's callback URL as registered at the provider
    /// (https://HOST/api/v1/auth/oidc/callback)
    #[arg(long, env = "METAWARD_OIDC_REDIRECT_URI")]
    pub oidc_redirect_uri: Option<String>,
    /// MLLP peers allowed to connect: addresses or CIDR ranges, comma-separated
    /// (e.g. 10.20.0.0/16,fd00::/8) [default: any, on loopback only]
    #[arg(long, env = "METAWARD_MLLP_ALLOW", value_delimiter = ',')]
    pub mllp_allow: Vec<String>,
    /// MLLP over TLS: require client certificates signed by this CA (PEM)
    #[arg(long, env = "METAWARD_MLLP_CLIENT_CA")]
    pub mllp_client_ca: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http: Option<SocketAddr>,
    mqtt: Option<MqttFile>,
    data: Option<PathBuf>,
    mllp: Option<SocketAddr>,
    device_offline_after: Option<u32>,
    alarm_limits: Option<PathBuf>,
    /// NEWS2 freshness windows in minutes, per parameter (`respiration_rate = 60`, ...).
    #[serde(default)]
    news2_freshness_minutes: std::collections::BTreeMap<String, f64>,
    emr: Option<EmrFile>,
    /// `[tls] cert = "…", key = "…"`: HTTPS on the `http` address.
    tls: Option<TlsFile>,
    /// MLLP over TLS with the `[tls]` certificate.
    #[serde(default)]
    mllp_tls: bool,
    /// `[auth.oidc]`: single sign-on.
    auth: Option<AuthFile>,
    /// `[mllp_access] allow = ["10.20.0.0/16"], client_ca = "ca.pem"` (docs/hl7.md).
    mllp_access: Option<MllpAccessFile>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct MllpAccessFile {
    #[serde(default)]
    allow: Vec<String>,
    client_ca: Option<PathBuf>,
    /// `[mllp_access.facilities] "gw-1.icu.example" = ["ICU"]`: certificate name → MSH-4s.
    #[serde(default)]
    facilities: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    oidc: Option<OidcFile>,
}

/// `[auth.oidc]` (docs/security.md, "Single sign-on (OIDC)").
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OidcFile {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_uri: Option<String>,
    scopes: Option<Vec<String>>,
    display_name: Option<String>,
    username_claim: Option<String>,
    ca_file: Option<PathBuf>,
    groups_claim: Option<String>,
    #[serde(default)]
    groups: Vec<GroupFile>,
    #[serde(default)]
    force_login: bool,
}

/// `[[auth.oidc.groups]] group = "…", role = "nurse", wards = ["ward-a"]` (or `"*"`).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    group: String,
    role: String,
    wards: WardsFile,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum WardsFile {
    List(Vec<String>),
    All(String),
}

/// Never prints the client secret.
impl std::fmt::Debug for OidcFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcFile")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: PathBuf,
    key: PathBuf,
}

/// `[emr]`: the external EMR (docs/emr.md). `push = true` sends device vitals to it.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct EmrFile {
    base_url: Option<String>,
    token: Option<String>,
    pull_interval_secs: Option<u64>,
    #[serde(default)]
    push: bool,
    /// Names this metaward in the identifiers of what it sends [default: metaward].
    source: Option<String>,
    /// Link ward patients to the EMR's by this identifier system (e.g. the MRN's) instead of
    /// by id.
    patient_identifier_system: Option<String>,
    /// For an https base URL: trust this CA file (PEM) instead of the public roots.
    ca_file: Option<PathBuf>,
}

/// The trust for an https EMR: its CA file, or the public roots.
fn emr_trust(file: &EmrFile) -> anyhow::Result<Option<server::sinks::http_client::Trust>> {
    file.ca_file
        .as_deref()
        .map(server::sinks::http_client::Trust::ca_file)
        .transpose()
        .map_err(|error| anyhow::anyhow!("emr.ca_file: {error}"))
}

/// `mqtt = "127.0.0.1:1883"`, or a `[mqtt]` table with the listener, the device policy and an
/// `[mqtt.external]` broker.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum MqttFile {
    Listen(SocketAddr),
    Section(MqttSection),
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct MqttSection {
    listen: Option<SocketAddr>,
    /// MQTT over TLS with the `[tls]` certificate.
    #[serde(default)]
    tls: bool,
    device_auth: Option<String>,
    external: Option<ExternalFile>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct ExternalFile {
    broker: Option<String>,
    client_id: Option<String>,
    share_group: Option<String>,
    username: Option<String>,
    password: Option<String>,
    topic_filter: Option<String>,
    session_expiry_secs: Option<u64>,
}

impl MqttFile {
    fn has_secret(&self) -> bool {
        matches!(self, MqttFile::Section(MqttSection { external: Some(external), .. }) if external.password.is_some())
    }
}

pub const DEFAULT_SHARE_GROUP: &str = "metaward";

/// The pull of admitted patients' record changes, when `[emr]` names an interval.
fn emr_pull(
    file: Option<&EmrFile>,
) -> anyhow::Result<Option<server::sources::fhir_pull::FhirPullConfig>> {
    let Some(file) = file else {
        return Ok(None);
    };
    let Some(interval) = file.pull_interval_secs else {
        return Ok(None);
    };
    if interval == 0 {
        anyhow::bail!("emr.pull_interval_secs must be at least 1");
    }
    let Some(base_url) = file.base_url.clone() else {
        anyhow::bail!("emr.pull_interval_secs needs emr.base_url (http(s)://host:port/fhir)");
    };
    server::sinks::http_client::split_base_url(&base_url)
        .map_err(|error| anyhow::anyhow!("emr.base_url: {error}"))?;
    Ok(Some(server::sources::fhir_pull::FhirPullConfig {
        base_url,
        token: std::env::var("METAWARD_EMR_TOKEN")
            .ok()
            .or(file.token.clone()),
        interval: std::time::Duration::from_secs(interval),
        trust: emr_trust(file)?,
        link: patient_link(file),
    }))
}

/// How ward patients are found at the EMR: by id, or by an identifier system.
fn patient_link(file: &EmrFile) -> server::emr_patient::PatientLink {
    match &file.patient_identifier_system {
        Some(system) => server::emr_patient::PatientLink::ByIdentifier {
            system: system.clone(),
        },
        None => server::emr_patient::PatientLink::ById,
    }
}

/// The vitals write-back, when `[emr]` asks for it. The token may come from the environment
/// (`METAWARD_EMR_TOKEN`) rather than the file.
fn emr_push(file: EmrFile) -> anyhow::Result<Option<server::sinks::fhir_push::FhirPushConfig>> {
    if !file.push {
        return Ok(None);
    }
    let trust = emr_trust(&file)?;
    let link = patient_link(&file);
    let Some(base_url) = file.base_url else {
        anyhow::bail!("emr.push needs emr.base_url (http(s)://host:port/fhir)");
    };
    server::sinks::http_client::split_base_url(&base_url)
        .map_err(|error| anyhow::anyhow!("emr.base_url: {error}"))?;
    let mut push = server::sinks::fhir_push::FhirPushConfig::new(base_url);
    push.trust = trust;
    push.link = link;
    push.token = std::env::var("METAWARD_EMR_TOKEN").ok().or(file.token);
    if let Some(source) = file.source {
        push.source = source;
    }
    Ok(Some(push))
}

impl ListenArgs {
    pub fn resolve(&self) -> anyhow::Result<server::ServerConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let (file_mqtt, mqtt_section) = match file.mqtt {
            Some(MqttFile::Listen(addr)) => (Some(addr), MqttSection::default()),
            Some(MqttFile::Section(section)) => (section.listen, section),
            None => (None, MqttSection::default()),
        };
        let device_auth = self
            .mqtt_device_auth
            .clone()
            .or(mqtt_section.device_auth)
            .unwrap_or_else(|| "optional".into());
        let mqtt_device_auth = server::sources::mqtt::DeviceAuth::from_key(&device_auth)
            .ok_or_else(|| {
                anyhow::anyhow!("mqtt.device_auth is `{device_auth}`; one of optional, required")
            })?;
        let mqtt_tls = self.mqtt_tls || mqtt_section.tls;
        let mqtt_external = self.external(mqtt_section.external.unwrap_or_default())?;
        let config = server::ServerConfig {
            http: self
                .http
                .or(file.http)
                .unwrap_or_else(|| DEFAULT_HTTP.parse().expect("valid default")),
            mqtt: self
                .mqtt
                .or(file_mqtt)
                .unwrap_or_else(|| DEFAULT_MQTT.parse().expect("valid default")),
            mqtt_device_auth,
            mqtt_external,
            data_dir: self
                .data
                .clone()
                .or(file.data)
                .unwrap_or_else(|| DEFAULT_DATA.into()),
            mllp: self
                .mllp
                .or(file.mllp)
                .unwrap_or_else(|| DEFAULT_MLLP.parse().expect("valid default")),
            devices: server::DeviceHealthConfig {
                offline_after_ms: self
                    .device_offline_after
                    .or(file.device_offline_after)
                    .map_or(
                        server::DeviceHealthConfig::default().offline_after_ms,
                        |secs| i64::from(secs) * 1000,
                    ),
                ..server::DeviceHealthConfig::default()
            },
            alarms: match self.alarm_limits.clone().or(file.alarm_limits) {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading alarm limits {}", path.display()))?;
                    server::AlarmConfig::from_toml(&text)
                        .with_context(|| format!("alarm limits {}", path.display()))?
                }
                None => server::AlarmConfig::default(),
            },
            news2: crate::score::config_with(&file.news2_freshness_minutes)?,
            emr_pull: emr_pull(file.emr.as_ref())?,
            emr_push: emr_push(file.emr.unwrap_or_default())?,
            tls: match (&self.tls_cert, &self.tls_key, file.tls) {
                (Some(cert), Some(key), _) => Some(server::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                (_, _, Some(tls)) => Some(server::tls::TlsFiles {
                    cert: tls.cert,
                    key: tls.key,
                }),
                _ => None,
            },
            mqtt_tls: None,
            mllp_tls: None,
            oidc: self.oidc(file.auth.and_then(|auth| auth.oidc))?,
            mllp_access: self.mllp_access(file.mllp_access.unwrap_or_default())?,
        };
        let mut config = config;
        let certificate = |what: &str| {
            config.tls.clone().ok_or_else(|| {
                anyhow::anyhow!("{what} over TLS needs a certificate: [tls] cert and key, or --tls-cert and --tls-key")
            })
        };
        let mqtt_files = mqtt_tls.then(|| certificate("MQTT")).transpose()?;
        let mllp_files = (self.mllp_tls || file.mllp_tls)
            .then(|| certificate("MLLP"))
            .transpose()?;
        config.mqtt_tls = mqtt_files;
        config.mllp_tls = mllp_files;
        // Only listeners that authenticate their peers may face the network.
        server::auth::check_exposure(&config).map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

impl ListenArgs {
    /// Single sign-on, when an issuer is named by a flag, the environment or the file.
    fn oidc(
        &self,
        file: Option<OidcFile>,
    ) -> anyhow::Result<Option<server::auth::oidc::OidcConfig>> {
        use server::auth::oidc::{OidcConfig, Secret};
        let file = file.unwrap_or_default();
        let Some(issuer) = self.oidc_issuer.clone().or(file.issuer) else {
            anyhow::ensure!(
                self.oidc_client_id.is_none() && file.client_id.is_none(),
                "auth.oidc needs an issuer (the provider's issuer URL)"
            );
            return Ok(None);
        };
        let client_id = self
            .oidc_client_id
            .clone()
            .or(file.client_id)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "auth.oidc.client_id is required: this server's client id at the provider"
                )
            })?;
        let redirect_uri = self
            .oidc_redirect_uri
            .clone()
            .or(file.redirect_uri)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "auth.oidc.redirect_uri is required: this server's callback as registered at the provider, e.g. https://metaward.example{}",
                    server::auth::oidc::CALLBACK_PATH
                )
            })?;
        let config = OidcConfig {
            issuer,
            client_id,
            client_secret: self
                .oidc_client_secret
                .clone()
                .or(file.client_secret)
                .map(Secret),
            redirect_uri,
            scopes: file.scopes.unwrap_or_else(|| {
                OidcConfig::DEFAULT_SCOPES
                    .iter()
                    .map(|scope| (*scope).to_owned())
                    .collect()
            }),
            display_name: file.display_name.unwrap_or_else(|| "SSO".into()),
            username_claim: file.username_claim,
            ca_file: file.ca_file,
            groups_claim: file.groups_claim,
            force_login: file.force_login,
            groups: file
                .groups
                .into_iter()
                .map(|rule| {
                    let role = server::auth::Role::from_key(&rule.role).ok_or_else(|| {
                        anyhow::anyhow!(
                            "auth.oidc.groups `{}`: unknown role `{}` (admin, physician, nurse, observer)",
                            rule.group,
                            rule.role
                        )
                    })?;
                    let wards = match rule.wards {
                        WardsFile::List(wards) => Some(wards),
                        WardsFile::All(all) if all == "*" => None,
                        WardsFile::All(other) => anyhow::bail!(
                            "auth.oidc.groups `{}`: wards is a list of ward ids or \"*\", not `{other}`",
                            rule.group
                        ),
                    };
                    Ok(server::auth::oidc::GroupRule {
                        group: rule.group,
                        role,
                        wards,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        };
        config.check().map_err(anyhow::Error::msg)?;
        Ok(Some(config))
    }

    /// Which MLLP peers may connect: flags and environment replace the file's list.
    fn mllp_access(
        &self,
        file: MllpAccessFile,
    ) -> anyhow::Result<server::sources::hl7_mllp::MllpAccess> {
        let allow = if self.mllp_allow.is_empty() {
            file.allow
        } else {
            self.mllp_allow.clone()
        };
        Ok(server::sources::hl7_mllp::MllpAccess {
            allow: allow
                .iter()
                .filter(|entry| !entry.trim().is_empty())
                .map(|entry| {
                    entry
                        .parse()
                        .map_err(|error| anyhow::anyhow!("mllp_access.allow: {error}"))
                })
                .collect::<anyhow::Result<_>>()?,
            client_ca: self.mllp_client_ca.clone().or(file.client_ca),
            facilities: file.facilities,
        })
    }

    /// The external broker, if one is named by a flag, the environment or the file.
    fn external(
        &self,
        file: ExternalFile,
    ) -> anyhow::Result<Option<server::sources::mqtt::ExternalBrokerConfig>> {
        use server::sources::mqtt::ExternalBrokerConfig;
        let Some(broker) = self.mqtt_external_broker.clone().or(file.broker) else {
            return Ok(None);
        };
        let client_id = self
            .mqtt_external_client_id
            .clone()
            .or(file.client_id)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "mqtt.external.client_id is required: a stable id per node, under which the broker keeps its session"
                )
            })?;
        Ok(Some(ExternalBrokerConfig {
            broker,
            client_id,
            share_group: self
                .mqtt_external_share_group
                .clone()
                .or(file.share_group)
                .or_else(|| Some(DEFAULT_SHARE_GROUP.into()))
                .filter(|group| !group.is_empty()),
            username: self.mqtt_external_username.clone().or(file.username),
            password: self.mqtt_external_password.clone().or(file.password),
            topic_filter: file
                .topic_filter
                .unwrap_or_else(|| ExternalBrokerConfig::DEFAULT_TOPIC_FILTER.into()),
            session_expiry: file
                .session_expiry_secs
                .map(std::time::Duration::from_secs)
                .unwrap_or(ExternalBrokerConfig::DEFAULT_SESSION_EXPIRY),
        }))
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: FileConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    warn_if_secrets_readable_by_others(path, &config);
    Ok(config)
}

/// A file holding a secret (the external broker's password, the OIDC client secret, the EMR's
/// token) should be readable only by its owner: say so when it is not (the server still
/// starts; the file is the operator's).
fn warn_if_secrets_readable_by_others(path: &Path, config: &FileConfig) {
    use std::os::unix::fs::PermissionsExt;
    let has_secret = config.mqtt.as_ref().is_some_and(|mqtt| mqtt.has_secret())
        || config
            .auth
            .as_ref()
            .and_then(|auth| auth.oidc.as_ref())
            .is_some_and(|oidc| oidc.client_secret.is_some())
        || config.emr.as_ref().is_some_and(|emr| emr.token.is_some());
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if has_secret && mode & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the configuration file holds a secret and is readable by others: chmod 600 it"
        );
    }
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
    fn emr_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metaward.toml");
        std::fs::write(
            &path,
            r#"
[emr]
base_url = "http://127.0.0.1:8090/fhir"
token = "from-file"
pull_interval_secs = 30
push = true
source = "ward-3"
patient_identifier_system = "urn:oid:2.16.840.1.113883.19.5"
"#,
        )
        .unwrap();
        let args = ListenArgs {
            config: Some(path.clone()),
            ..ListenArgs::default()
        };
        let config = args.resolve().unwrap();
        let push = config.emr_push.unwrap();
        assert_eq!(push.base_url, "http://127.0.0.1:8090/fhir");
        assert_eq!(push.source, "ward-3");
        let pull = config.emr_pull.unwrap();
        assert_eq!(pull.interval, std::time::Duration::from_secs(30));
        assert_eq!(pull.token.as_deref(), Some("from-file"));
        let by_mrn = server::emr_patient::PatientLink::ByIdentifier {
            system: "urn:oid:2.16.840.1.113883.19.5".into(),
        };
        assert_eq!((&pull.link, &push.link), (&by_mrn, &by_mrn));

        // Without a base URL, or with one this build cannot reach: refused, not ignored.
        for (text, expected) in [
            ("[emr]\npush = true\n", "base_url"),
            (
                "[emr]\nbase_url = \"ftp://emr.example/fhir\"\npush = true\n",
                "https://",
            ),
            (
                "[emr]\nbase_url = \"https://emr.example/fhir\"\npush = true\nca_file = \"/nonexistent/ca.pem\"\n",
                "emr.ca_file",
            ),
            (
                "[emr]\nbase_url = \"http://emr.example/fhir\"\npull_interval_secs = 0\n",
                "at least 1",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let args = ListenArgs {
                config: Some(path.clone()),
                ..ListenArgs::default()
            };
            let error = args.resolve().unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
        // No [emr]: no sync.
        std::fs::write(&path, "").unwrap();
        let args = ListenArgs {
            config: Some(path.clone()),
            ..ListenArgs::default()
        };
        let config = args.resolve().unwrap();
        assert!(config.emr_push.is_none() && config.emr_pull.is_none());
    }

    #[test]
    fn mqtt_section_with_an_external_broker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metaward.toml");
        std::fs::write(
            &path,
            r#"
[mqtt]
listen = "127.0.0.1:9001"
device_auth = "required"

[mqtt.external]
broker = "broker.ward.example:1883"
client_id = "metaward-node-a"
username = "metaward"
password = "from-file"
"#,
        )
        .unwrap();
        let args = ListenArgs {
            config: Some(path.clone()),
            mqtt_external_password: Some("from-env".into()),
            ..ListenArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.mqtt.port(), 9001);
        assert_eq!(
            config.mqtt_device_auth,
            server::sources::mqtt::DeviceAuth::Required
        );
        let external = config.mqtt_external.unwrap();
        assert_eq!(external.broker, "broker.ward.example:1883");
        assert_eq!(
            external.subscription(),
            "$share/metaward/metaward/v1/devices/+/obs"
        );
        assert_eq!(external.password.as_deref(), Some("from-env"));
        assert_eq!(external.username.as_deref(), Some("metaward"));

        // Without a client id the broker could not keep the session: refused.
        std::fs::write(&path, "[mqtt.external]\nbroker = \"h:1\"\n").unwrap();
        let args = ListenArgs {
            config: Some(path.clone()),
            ..ListenArgs::default()
        };
        assert!(
            args.resolve()
                .unwrap_err()
                .to_string()
                .contains("client_id")
        );
        std::fs::write(&path, "[mqtt]\ndevice_auth = \"sometimes\"\n").unwrap();
        assert!(args.resolve().is_err());
    }

    #[test]
    fn auth_oidc_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metaward.toml");
        std::fs::write(
            &path,
            r#"
[auth.oidc]
issuer = "https://idp.hospital.example/realms/wards"
client_id = "metaward"
client_secret = "from-file"
redirect_uri = "https://metaward.hospital.example/api/v1/auth/oidc/callback"
display_name = "Hospital login"
username_claim = "preferred_username"
groups_claim = "groups"

[[auth.oidc.groups]]
group = "icu-physicians"
role = "physician"
wards = ["icu"]

[[auth.oidc.groups]]
group = "metaward-admins"
role = "admin"
wards = "*"
"#,
        )
        .unwrap();
        let args = ListenArgs {
            config: Some(path.clone()),
            oidc_client_secret: Some("from-env".into()),
            ..ListenArgs::default()
        };
        let oidc = args.resolve().unwrap().oidc.unwrap();
        assert_eq!(oidc.issuer, "https://idp.hospital.example/realms/wards");
        assert_eq!(oidc.client_secret.as_ref().unwrap().0, "from-env");
        assert_eq!(oidc.scopes, ["openid", "profile", "email"]);
        assert_eq!(oidc.display_name, "Hospital login");
        assert_eq!(oidc.groups.len(), 2);
        assert_eq!(oidc.groups[0].role, server::auth::Role::Physician);
        assert_eq!(oidc.groups[0].wards, Some(vec!["icu".to_owned()]));
        assert_eq!(oidc.groups[1].wards, None);
        assert!(!format!("{oidc:?}").contains("from-env"), "never printed");

        for (text, expected) in [
            (
                "[auth.oidc]\nissuer = \"http://idp.example\"\nclient_id = \"m\"\nredirect_uri = \"https://m.example/api/v1/auth/oidc/callback\"\n",
                "plain http",
            ),
            (
                "[auth.oidc]\nissuer = \"https://idp.example\"\nredirect_uri = \"https://m.example/api/v1/auth/oidc/callback\"\n",
                "client_id",
            ),
            (
                "[auth.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"m\"\n",
                "redirect_uri",
            ),
            ("[auth.oidc]\nclient_id = \"m\"\n", "issuer"),
            (
                "[auth.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"m\"\nredirect_uri = \"https://m.example/api/v1/auth/oidc/callback\"\ngroups_claim = \"groups\"\n[[auth.oidc.groups]]\ngroup = \"g\"\nrole = \"root\"\nwards = \"*\"\n",
                "unknown role",
            ),
            (
                "[auth.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"m\"\nredirect_uri = \"https://m.example/api/v1/auth/oidc/callback\"\n[[auth.oidc.groups]]\ngroup = \"g\"\nrole = \"nurse\"\nwards = [\"w\"]\n",
                "groups_claim",
            ),
            ("[auth.oidc]\nisuer = \"https://idp.example\"\n", "isuer"),
        ] {
            std::fs::write(&path, text).unwrap();
            let args = ListenArgs {
                config: Some(path.clone()),
                ..ListenArgs::default()
            };
            let error = format!("{:#}", args.resolve().unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
        }
        // Flags alone (a loopback provider over plain http is allowed, for tests).
        let args = ListenArgs {
            oidc_issuer: Some("http://127.0.0.1:9999".into()),
            oidc_client_id: Some("metaward".into()),
            oidc_redirect_uri: Some("http://127.0.0.1:8080/api/v1/auth/oidc/callback".into()),
            ..ListenArgs::default()
        };
        assert!(args.resolve().unwrap().oidc.is_some());
        assert!(ListenArgs::default().resolve().unwrap().oidc.is_none());
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
        // HTTP always authenticates its users: it may face the network.
        let args = ListenArgs {
            http: Some("0.0.0.0:8080".parse().unwrap()),
            ..ListenArgs::default()
        };
        assert!(args.resolve().is_ok());
        // The broker only with device credentials required.
        let args = ListenArgs {
            mqtt: Some("0.0.0.0:1883".parse().unwrap()),
            ..ListenArgs::default()
        };
        let error = args.resolve().unwrap_err().to_string();
        assert!(
            error.contains("requires authentication") && error.contains("device_auth"),
            "{error}"
        );
        let args = ListenArgs {
            mllp: Some("0.0.0.0:2575".parse().unwrap()),
            ..ListenArgs::default()
        };
        let error = args.resolve().unwrap_err().to_string();
        assert!(error.contains("(mllp)"), "{error}");
        // MLLP beyond loopback with an allow-list of its gateways, or client certificates.
        let args = ListenArgs {
            mllp: Some("0.0.0.0:2575".parse().unwrap()),
            mllp_allow: vec!["10.20.0.0/16".into(), "fd00::/8".into()],
            ..ListenArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.mllp_access.allow.len(), 2);
        let args = ListenArgs {
            mllp: Some("0.0.0.0:2575".parse().unwrap()),
            mllp_allow: vec!["0.0.0.0/0".into()],
            ..ListenArgs::default()
        };
        assert!(args.resolve().is_err(), "an allow-list of everyone is none");
        let args = ListenArgs {
            mllp_allow: vec!["10.1.2.3/8".into()],
            ..ListenArgs::default()
        };
        let error = args.resolve().unwrap_err().to_string();
        assert!(error.contains("mllp_access.allow"), "{error}");
        let path = dir.path().join("mllp.toml");
        std::fs::write(
            &path,
            "mllp = \"0.0.0.0:2575\"\nmllp_tls = true\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n[mllp_access]\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap();
        let args = ListenArgs {
            config: Some(path.clone()),
            ..ListenArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(
            config.mllp_access.client_ca,
            Some(std::path::PathBuf::from("ca.pem"))
        );
        std::fs::write(
            &path,
            "[mllp_access]\nclient_ca = \"ca.pem\"\n[mllp_access.facilities]\n\"gw-1.icu.example\" = [\"ICU\", \"ICU2\"]\n",
        )
        .unwrap();
        let config = args.resolve().unwrap();
        assert_eq!(
            config.mllp_access.facilities["gw-1.icu.example"],
            vec!["ICU".to_owned(), "ICU2".to_owned()]
        );
        // Client certificates without TLS authenticate nobody.
        std::fs::write(
            &path,
            "mllp = \"0.0.0.0:2575\"\n[mllp_access]\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap();
        assert!(args.resolve().is_err());
    }
}
