//! The configuration of one oxcart process.
//!
//! One section per component, each the component's own struct with its defaults stated
//! once, in its own crate: `[http]` is `HttpConfig` (platform), `[orders]` is
//! `OrdersConfig` (orders), and so on. Adding a setting is adding a field to one of them.
//!
//! Layers, each overriding the one before: built-in defaults, a TOML file (`--config` or
//! `OXCART_CONFIG`), the ecosystem's conventional variables (`DATABASE_URL`,
//! `KAFKA_BROKERS`, `SMTP_URL`, `REDIS_URL`), `OXCART_<SECTION>__<KEY>` variables
//! (`OXCART_HTTP__LISTEN`, `OXCART_USERS__TOKEN_TTL`; top-level keys as
//! `OXCART_SERVICES`), and finally command-line flags.
//!
//! A key no setting has is an error that names it and the closest setting, whether it
//! comes from the file or the environment: a misspelt key would otherwise be ignored and
//! the setting it meant keep its default.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use oxcart_events::consumer::RetryPolicy;
use oxcart_invoices::InvoiceConfig;
use oxcart_notifications::MailConfig;
use oxcart_orders::OrdersConfig;
use oxcart_payments::PaymentsConfig;
use oxcart_platform::cache::CacheConfig;
use oxcart_platform::housekeeping::HousekeepingConfig;
use oxcart_platform::http::HttpConfig;
use oxcart_platform::limit::RateLimitConfig;
use oxcart_platform::service::About;
use oxcart_platform::tax::TaxConfig;
use oxcart_platform::telemetry::LogFormat;
use oxcart_postgres::PgConfig;
use oxcart_redis::RedisConfig;
use oxcart_sqlite::SqliteConfig;
use oxcart_users::UsersConfig;
use oxcart_webhooks::WebhooksConfig;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Declares [`Service`] from one line per service: its variant and its crate, whose
/// `ABOUT` names it and describes its API.
macro_rules! services {
    ($($variant:ident => $krate:ident),+ $(,)?) => {
        /// The services one process can run. All run by default.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum Service {
            $($variant),+
        }

        impl Service {
            pub const ALL: [Service; [$(stringify!($variant)),+].len()] = [$(Self::$variant),+];

            /// The service's name and API, as its crate states them.
            pub fn about(self) -> &'static About {
                match self {
                    $(Self::$variant => &$krate::ABOUT),+
                }
            }
        }
    };
}

services! {
    Users => oxcart_users,
    Catalog => oxcart_catalog,
    Orders => oxcart_orders,
    Payments => oxcart_payments,
    Notifications => oxcart_notifications,
    Invoices => oxcart_invoices,
    Analytics => oxcart_analytics,
    Webhooks => oxcart_webhooks,
}

impl Service {
    pub fn name(self) -> &'static str {
        self.about().name
    }
}

/// A set of services, written `users,orders` or `all`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Services(BTreeSet<Service>);

impl Services {
    pub fn all() -> Self {
        Self(Service::ALL.into_iter().collect())
    }

    pub fn contains(&self, service: Service) -> bool {
        self.0.contains(&service)
    }

    pub fn iter(&self) -> impl Iterator<Item = Service> + '_ {
        self.0.iter().copied()
    }

    /// The `service.name` a process running these services reports, unless
    /// `OTEL_SERVICE_NAME` says otherwise: `oxcart` for all of them, else `oxcart-payments`,
    /// `oxcart-invoices-analytics`.
    pub fn service_name(&self) -> String {
        if *self == Self::all() {
            return "oxcart".to_owned();
        }
        let names: Vec<_> = self.iter().map(Service::name).collect();
        format!("oxcart-{}", names.join("-"))
    }
}

impl Default for Services {
    fn default() -> Self {
        Self::all()
    }
}

impl FromStr for Services {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                set.extend(Service::ALL);
                continue;
            }
            let service = Service::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| {
                    let known: Vec<_> = Service::ALL.iter().map(|s| s.name()).collect();
                    format!(
                        "unknown service `{name}` (known: {}, or all)",
                        known.join(", ")
                    )
                })?;
            set.insert(service);
        }
        if set.is_empty() {
            return Err("name at least one service, or all".to_owned());
        }
        Ok(Self(set))
    }
}

impl TryFrom<String> for Services {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Services> for String {
    fn from(services: Services) -> Self {
        services.to_string()
    }
}

impl fmt::Display for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(Service::name).collect();
        f.write_str(&names.join(","))
    }
}

/// Every setting of a process: a few top-level keys, then one section per component.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub services: Services,
    /// Where the SQLite database, the token signing key and (without SMTP) e-mails live.
    pub data_dir: PathBuf,
    /// Apply pending migrations at start. Off when a separate `oxcart migrate` owns them.
    pub migrate: bool,
    pub http: HttpConfig,
    pub rate_limit: RateLimitConfig,
    pub redis: RedisConfig,
    /// `[caching]` (not `[cache]`: `OXCART_CACHE` is the build cache's directory in
    /// oxcart's own scripts, and a variable of that name would be read as the section).
    pub caching: CacheConfig,
    pub database: DatabaseConfig,
    pub kafka: KafkaSection,
    pub consumers: RetryPolicy,
    pub housekeeping: HousekeepingConfig,
    pub telemetry: TelemetryConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub users: UsersConfig,
    pub orders: OrdersConfig,
    pub payments: PaymentsConfig,
    pub mail: MailConfig,
    pub webhooks: WebhooksConfig,
    /// The seller every invoice names.
    pub invoices: InvoiceConfig,
    /// Tax classes and rates: catalog products carry a class, invoices show its rate.
    pub tax: TaxConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            services: Services::all(),
            data_dir: PathBuf::from("data"),
            migrate: true,
            http: HttpConfig::default(),
            rate_limit: RateLimitConfig::default(),
            redis: RedisConfig::default(),
            caching: CacheConfig::default(),
            database: DatabaseConfig::default(),
            kafka: KafkaSection::default(),
            consumers: RetryPolicy::default(),
            housekeeping: HousekeepingConfig::default(),
            telemetry: TelemetryConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            users: UsersConfig::default(),
            orders: OrdersConfig::default(),
            payments: PaymentsConfig::default(),
            mail: MailConfig::default(),
            webhooks: WebhooksConfig::default(),
            invoices: InvoiceConfig::default(),
            tax: TaxConfig::default(),
        }
    }
}

/// `[database]`: where the data lives, and each engine's pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:<path>` (defaults to `<data_dir>/oxcart.db`), or
    /// `postgres://user:pass@host:port/db` for PostgreSQL (directly or through PgBouncer).
    /// `DATABASE_URL` sets it too.
    pub url: Option<String>,
    /// PostgreSQL read replicas, comma-separated: the query endpoints read from them in
    /// turn. Unset: the primary serves reads. `DATABASE_READ_URL`.
    pub read_url: Option<String>,
    /// Where `oxcart migrate` applies PostgreSQL migrations: the primary, directly, when
    /// `url` goes through a transaction-pooling PgBouncer. Defaults to `url`.
    /// `DATABASE_MIGRATION_URL`.
    pub migration_url: Option<String>,
    pub sqlite: SqliteConfig,
    pub postgres: PgConfig,
}

/// `[kafka]`: carry events over Kafka instead of the embedded log.
///
/// Stated here rather than taken from `oxcart_kafka::KafkaConfig` so that a build without
/// the `kafka` feature (and librdkafka) reads and checks the same file; a test of that
/// feature holds the two to the same defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    /// `host:port,…`: use Kafka (a build with `--features kafka`, and PostgreSQL so that
    /// every process shares the log). `KAFKA_BROKERS` sets it too.
    pub brokers: Option<String>,
    /// Put before every topic and consumer-group name, to share a cluster.
    pub prefix: String,
    /// Partitions of each topic created at start.
    pub partitions: i32,
    /// Replication factor of each topic created at start.
    pub replication: i32,
    /// Events the outbox relay publishes per round.
    pub relay_batch: usize,
    /// How often an idle relay looks for events other processes appended.
    #[serde(with = "humantime_serde")]
    pub relay_interval: Duration,
    /// librdkafka properties for every Kafka client, by librdkafka's names (TLS, SASL and
    /// whatever else a managed cluster asks for); `OXCART_LIBRDKAFKA_<NAME>` variables
    /// are merged over them when Kafka starts.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            brokers: None,
            prefix: String::new(),
            partitions: 3,
            replication: 1,
            relay_batch: 500,
            relay_interval: Duration::from_millis(100),
            properties: BTreeMap::new(),
        }
    }
}

/// `[telemetry]`: how logs are written. Traces and their exporter follow the standard
/// `OTEL_*` variables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
}

/// `[tls]`: what outside connections trust.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of CA certificates that SMTP and calls between services
    /// (`orders.catalog_url`) trust besides the public roots: for a relay or a mesh with a
    /// private CA. (PostgreSQL takes its CA in the URL, `sslrootcert=`; Kafka as the
    /// property `ssl.ca.location`; OTLP from `OTEL_EXPORTER_OTLP_CERTIFICATE`.)
    pub ca_file: Option<PathBuf>,
}

/// `[auth]`: the key every token is signed and checked with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// PEM (PKCS#8 Ed25519) key tokens are signed with; generated into the data directory
    /// when absent.
    #[serde(skip_serializing)]
    pub jwt_private_key: Option<SecretString>,
}

/// The conventional variables, and the setting each sets.
const CONVENTIONAL: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("DATABASE_READ_URL", "database.read_url"),
    ("DATABASE_MIGRATION_URL", "database.migration_url"),
    ("KAFKA_BROKERS", "kafka.brokers"),
    ("SMTP_URL", "mail.smtp_url"),
    ("REDIS_URL", "redis.url"),
    ("STRIPE_API_KEY", "payments.stripe.api_key"),
    ("STRIPE_WEBHOOK_SECRET", "payments.stripe.webhook_secret"),
];

/// `OXCART_*` variables that are not settings: read by the logger, the command line and
/// the admin command, or librdkafka properties.
const NOT_SETTINGS: &[&str] = &["LOG", "CONFIG", "ADMIN_PASSWORD"];

/// The prefix of a librdkafka property's variable (`OXCART_LIBRDKAFKA_SECURITY_PROTOCOL`).
pub const LIBRDKAFKA_PREFIX: &str = "OXCART_LIBRDKAFKA_";

/// The `OXCART_*` variable of a setting's dotted key: `http.listen` is
/// `OXCART_HTTP__LISTEN`.
pub fn variable(key: &str) -> String {
    format!("OXCART_{}", key.replace('.', "__").to_ascii_uppercase())
}

/// Fails on a key of the file that no top-level setting has, naming it and the setting
/// it was probably meant to be. (A key inside a section is refused by the section's own
/// struct, and reworded by [`explain`].) A file that does not read as the settings at all
/// is left to the full load, whose error names the setting.
fn refuse_unknown_keys(file: &Path) -> Result<(), Box<figment::Error>> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Ok(());
    };
    let mut unknown = Vec::new();
    let read: Result<Config, _> =
        serde_ignored::deserialize(toml::Deserializer::new(&text), |path| {
            unknown.push(path.to_string());
        });
    match (read, unknown.first()) {
        (Ok(_), Some(key)) => {
            let known = serde_aux::serde_introspection::serde_introspect::<Config>();
            Err(Box::new(figment::Error::from(format!(
                "{}: `{key}` is not a setting{}",
                file.display(),
                did_you_mean(key, known, "")
            ))))
        }
        _ => Ok(()),
    }
}

/// ` (did you mean `<prefix><closest>`?)` when one of `known` is near enough to `key` to
/// be a slip, else nothing.
fn did_you_mean(key: &str, known: &[&str], prefix: &str) -> String {
    known
        .iter()
        .map(|setting| (strsim::jaro_winkler(key, setting), *setting))
        .filter(|(similarity, _)| *similarity >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, setting)| format!(" (did you mean `{prefix}{setting}`?)"))
        .unwrap_or_default()
}

/// The variable an error's setting came from, when it came from one: figment names the
/// key as it split it (`HTTP.REQUEST_TIMEOUT`), not as the user wrote it.
fn source_variable(error: &figment::Error) -> Option<String> {
    let name = &error.metadata.as_ref()?.name;
    let key = error.path.join(".");
    if name.contains("OXCART_") {
        return Some(variable(&key));
    }
    if name.contains("environment") {
        return CONVENTIONAL
            .iter()
            .find(|(_, setting)| key.eq_ignore_ascii_case(setting))
            .map(|(conventional, _)| (*conventional).to_owned());
    }
    None
}

/// Rewords figment's errors to name the setting as the user wrote it. A section refuses a
/// key it has no field for as "unknown field `listne`, expected one of …"; this says
/// "`http.listne` is not a setting (did you mean `http.listen`?)", or the same of the
/// variable when the key came from one. A bad value from a variable names the variable.
fn explain(error: figment::Error) -> figment::Error {
    let variable_name = source_variable(&error);
    let figment::error::Kind::UnknownField(field, expected) = &error.kind else {
        return match variable_name {
            Some(name) if !error.path.is_empty() => {
                figment::Error::from(format!("`{name}`: {}", error.kind))
            }
            _ => error,
        };
    };
    let section = error.path[..error.path.len().saturating_sub(1)].join(".");
    let key = format!("{section}.{field}");
    let message = match variable_name {
        Some(name) => {
            let prefix = variable(&format!("{section}."));
            let known: Vec<String> = expected.iter().map(|f| f.to_ascii_uppercase()).collect();
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            let meant = did_you_mean(&field.to_ascii_uppercase(), &known, &prefix);
            format!("`{name}` is not a setting{meant}")
        }
        None => {
            let source = error
                .metadata
                .as_ref()
                .and_then(|m| m.source.as_ref())
                .map(|s| format!("{s}: "))
                .unwrap_or_default();
            let meant = did_you_mean(field, expected, &format!("{section}."));
            format!("{source}`{key}` is not a setting{meant}")
        }
    };
    figment::Error::from(message)
}

/// Fails on an `OXCART_<NAME>` variable whose name is a section's key without its section
/// (`OXCART_LISTEN` for `OXCART_HTTP__LISTEN`, as the settings were named before they
/// had sections): it would otherwise be ignored in silence. Other `OXCART_*` variables
/// (of tests, of other tools) are left alone.
fn refuse_sectionless_variables(
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), Box<figment::Error>> {
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let Some(sections) = defaults.as_object() else {
        return Ok(());
    };
    for (name, _) in vars {
        let Some(rest) = name.strip_prefix("OXCART_") else {
            continue;
        };
        let key = rest.to_ascii_lowercase();
        if let Some((section, _)) = key.split_once("__") {
            // `OXCART_HTP__LISTEN`: a section name slipped.
            let known: Vec<&str> = sections.keys().map(String::as_str).collect();
            let meant = did_you_mean(section, &known, "");
            if !sections.contains_key(section) && !meant.is_empty() {
                return Err(Box::new(figment::Error::from(format!(
                    "`{name}`: `{section}` is not a section{meant}"
                ))));
            }
            continue;
        }
        if sections.contains_key(&key) || NOT_SETTINGS.contains(&rest) {
            continue;
        }
        // `database_url` was `database.url`; `listen` was `http.listen`.
        let meant = sections.iter().find_map(|(section, fields)| {
            let fields = fields.as_object()?;
            let field = key.strip_prefix(&format!("{section}_")).unwrap_or(&key);
            fields
                .contains_key(field)
                .then(|| variable(&format!("{section}.{field}")))
        });
        if let Some(meant) = meant {
            return Err(Box::new(figment::Error::from(format!(
                "`{name}` is not a setting: settings have sections now; did you mean `{meant}`?"
            ))));
        }
    }
    Ok(())
}

impl Config {
    /// Loads every layer; `flags` holds only the settings given on the command line, as
    /// nested as the file (`{"http": {"listen": …}}`).
    pub fn load(file: Option<&Path>, flags: impl Serialize) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            refuse_unknown_keys(file)?;
            figment = figment.merge(Toml::file_exact(file));
        }
        refuse_sectionless_variables(std::env::vars())?;
        let names: Vec<&str> = CONVENTIONAL.iter().map(|(name, _)| *name).collect();
        figment
            .merge(Env::raw().only(&names).map(|name| {
                let key = CONVENTIONAL
                    .iter()
                    .find(|(conventional, _)| name.as_str().eq_ignore_ascii_case(conventional))
                    .map_or(name.as_str(), |(_, key)| key);
                key.to_owned().into()
            }))
            .merge(
                Env::prefixed("OXCART_")
                    .ignore(NOT_SETTINGS)
                    .filter(|name| {
                        !name
                            .as_str()
                            .to_ascii_uppercase()
                            .starts_with(&LIBRDKAFKA_PREFIX["OXCART_".len()..])
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|error| Box::new(explain(error)))
    }

    /// The settings in effect as TOML, for `oxcart config check`: a password in a database
    /// URL, the secrets (`auth.jwt_private_key`, `mail.smtp_url`) and secret librdkafka
    /// properties shown as `***`. (`OXCART_LIBRDKAFKA_*` variables are merged over
    /// `kafka.properties` when Kafka starts.)
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        let mut shown = self.clone();
        let redact_all = |urls: &str| {
            urls.split(',')
                .map(|url| oxcart_postgres::redact(url.trim()))
                .collect::<Vec<_>>()
                .join(",")
        };
        let database = &mut shown.database;
        for url in [
            &mut database.url,
            &mut database.read_url,
            &mut database.migration_url,
        ] {
            *url = url.as_deref().map(redact_all);
        }
        shown.redis.url = shown.redis.url.as_deref().map(oxcart_redis::redact);
        for (name, value) in &mut shown.kafka.properties {
            if oxcart_platform::redact::is_secret_property(name) {
                *value = "***".to_owned();
            }
        }
        let mut table = toml::Table::try_from(&shown)?;
        for (section, name, set) in [
            (
                "auth",
                "jwt_private_key",
                self.auth.jwt_private_key.is_some(),
            ),
            ("mail", "smtp_url", self.mail.smtp_url.is_some()),
        ] {
            if let (true, Some(toml::Value::Table(section))) = (set, table.get_mut(section)) {
                section.insert(name.to_owned(), "***".into());
            }
        }
        toml::to_string(&table)
    }

    /// The database this process uses.
    pub fn database_url(&self) -> String {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("oxcart.db").display()))
    }

    /// The read replicas' URLs.
    pub fn database_read_urls(&self) -> Vec<String> {
        self.database
            .read_url
            .iter()
            .flat_map(|urls| urls.split(','))
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Where PostgreSQL migrations are applied.
    pub fn database_migration_url(&self) -> String {
        self.database
            .migration_url
            .clone()
            .unwrap_or_else(|| self.database_url())
    }

    /// Kafka's settings; the file's `kafka.properties`, overridden by
    /// `OXCART_LIBRDKAFKA_*` variables, and refused if they name one oxcart sets itself.
    #[cfg(feature = "kafka")]
    pub fn kafka(&self) -> Result<oxcart_kafka::KafkaConfig, oxcart_kafka::PropertyError> {
        use oxcart_kafka::Properties;
        let kafka = &self.kafka;
        let file = Properties::new(kafka.properties.clone())?;
        let properties = file.merged(Properties::from_vars(std::env::vars())?);
        Ok(oxcart_kafka::KafkaConfig {
            brokers: kafka.brokers.clone().unwrap_or_default(),
            prefix: kafka.prefix.clone(),
            partitions: kafka.partitions.max(1),
            replication: kafka.replication.max(1),
            relay_batch: kafka.relay_batch.max(1),
            relay_interval: kafka.relay_interval,
            properties,
        })
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.data_dir.join("jwt-ed25519.pem")
    }

    /// How consumers retry: at least one attempt, whatever the file says.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.consumers.max_attempts.max(1),
            ..self.consumers
        }
    }

    /// Where e-mails go without SMTP, unless `mail.dir` says.
    pub fn default_mail_dir(&self) -> PathBuf {
        self.data_dir.join("mail")
    }
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment::Jail decides its closures' error type"
)]
mod tests {
    use super::*;

    #[test]
    fn services_parse_lists_and_all() {
        assert_eq!(
            "users, orders".parse::<Services>().unwrap().to_string(),
            "users,orders"
        );
        assert_eq!("all".parse::<Services>().unwrap(), Services::all());
        assert!(
            "users,billing"
                .parse::<Services>()
                .unwrap_err()
                .contains("unknown service `billing`")
        );
        assert!("".parse::<Services>().is_err());
    }

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "oxcart.toml",
                "services = \"users\"\n[http]\nlisten = \"127.0.0.1:9000\"\n\
                 [users]\ntoken_ttl = \"10m\"",
            )?;
            jail.set_env("DATABASE_URL", "sqlite:conventional.db");
            jail.set_env("OXCART_USERS__TOKEN_TTL", "20m");
            let config = Config::load(
                Some(Path::new("oxcart.toml")),
                serde_json::json!({ "services": "catalog" }),
            )
            .map_err(|e| *e)?;
            assert_eq!(config.http.listen.port(), 9000);
            assert_eq!(config.users.token_ttl.as_secs(), 1200);
            assert_eq!(config.database_url(), "sqlite:conventional.db");
            assert_eq!(config.services.to_string(), "catalog");

            jail.set_env("OXCART_DATABASE__URL", "sqlite:ours.db");
            jail.set_env("OXCART_ORDERS__CATALOG_URL", "http://catalog:8080");
            jail.set_env("SMTP_URL", "smtp://relay:25");
            let config = Config::load(None, serde_json::json!({})).map_err(|e| *e)?;
            assert_eq!(config.database_url(), "sqlite:ours.db");
            assert_eq!(config.http.listen.port(), 8080);
            assert_eq!(
                config.orders.catalog_url.as_deref(),
                Some("http://catalog:8080")
            );
            assert!(config.mail.smtp_url.is_some());
            Ok(())
        });
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn kafka_properties_come_from_the_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "oxcart.toml",
                "[kafka]\nbrokers = \"b1:9093\"\n[kafka.properties]\n\
                 \"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"/etc/ca.pem\"",
            )?;
            jail.set_env("OXCART_LIBRDKAFKA_SECURITY_PROTOCOL", "SASL_SSL");
            jail.set_env("OXCART_LIBRDKAFKA_SASL_USERNAME", "shop");
            let config = Config::load(Some(Path::new("oxcart.toml")), serde_json::json!({}))
                .map_err(|e| *e)?;
            let kafka = config.kafka().unwrap();
            assert_eq!(kafka.brokers, "b1:9093");
            assert_eq!(kafka.properties.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(kafka.properties.get("ssl.ca.location"), Some("/etc/ca.pem"));
            assert_eq!(kafka.properties.get("sasl.username"), Some("shop"));

            jail.set_env("OXCART_LIBRDKAFKA_GROUP_ID", "mine");
            let config = Config::load(None, serde_json::json!({})).map_err(|e| *e)?;
            let error = config.kafka().unwrap_err().to_string();
            assert!(error.contains("`group.id`"), "{error}");
            Ok(())
        });
    }

    /// The section stated here for builds without Kafka starts where the Kafka crate's
    /// own settings do.
    #[cfg(feature = "kafka")]
    #[test]
    fn the_kafka_section_has_the_kafka_crates_defaults() {
        let ours = Config::default().kafka().unwrap();
        let theirs = oxcart_kafka::KafkaConfig::default();
        assert_eq!(
            (ours.prefix, ours.partitions, ours.replication),
            (theirs.prefix, theirs.partitions, theirs.replication)
        );
        assert_eq!(
            (ours.relay_batch, ours.relay_interval),
            (theirs.relay_batch, theirs.relay_interval)
        );
        assert_eq!(LIBRDKAFKA_PREFIX, oxcart_kafka::ENV_PREFIX);
    }

    fn load_error(file: &str) -> String {
        Config::load(Some(Path::new(file)), serde_json::json!({}))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_misspelt_key_in_the_file_is_refused_with_the_setting_it_meant() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("top.toml", "servises = \"users\"")?;
            let error = load_error("top.toml");
            assert!(
                error.contains("`servises` is not a setting (did you mean `services`?)"),
                "{error}"
            );
            jail.create_file("section.toml", "[http]\nlistne = \"127.0.0.1:9000\"")?;
            let error = load_error("section.toml");
            assert!(
                error.contains("`http.listne` is not a setting (did you mean `http.listen`?)"),
                "{error}"
            );
            assert!(error.contains("section.toml"), "{error}");
            jail.create_file("nested.toml", "[database.postgres]\nmax_conections = 4")?;
            let error = load_error("nested.toml");
            assert!(
                error.contains("(did you mean `database.postgres.max_connections`?)"),
                "{error}"
            );
            jail.create_file("far.toml", "colour = \"blue\"")?;
            let error = load_error("far.toml");
            assert!(error.contains("`colour` is not a setting"), "{error}");
            assert!(!error.contains("did you mean"), "{error}");
            jail.create_file("section_name.toml", "[htp]\nlisten = \"127.0.0.1:9000\"")?;
            let error = load_error("section_name.toml");
            assert!(error.contains("(did you mean `http`?)"), "{error}");
            // Every real key, the librdkafka table's included, still loads.
            jail.create_file(
                "good.toml",
                "[http]\nlisten = \"127.0.0.1:9000\"\n[mail]\nsmtp_url = \"smtp://relay:25\"\n\
                 [kafka.properties]\n\"security.protocol\" = \"SSL\"",
            )?;
            Config::load(Some(Path::new("good.toml")), serde_json::json!({})).map_err(|e| *e)?;
            Ok(())
        });
    }

    #[test]
    fn a_misspelt_or_sectionless_variable_is_refused_with_the_one_it_meant() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OXCART_HTTP__LISTNE", "127.0.0.1:9000");
            let error = Config::load(None, serde_json::json!({}))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(
                    "`OXCART_HTTP__LISTNE` is not a setting (did you mean `OXCART_HTTP__LISTEN`?)"
                ),
                "{error}"
            );
            jail.clear_env();
            // The names settings had before they had sections.
            for (old, new) in [
                ("OXCART_LISTEN", "OXCART_HTTP__LISTEN"),
                ("OXCART_TOKEN_TTL", "OXCART_USERS__TOKEN_TTL"),
                ("OXCART_KAFKA_PARTITIONS", "OXCART_KAFKA__PARTITIONS"),
                ("OXCART_MAIL_FROM", "OXCART_MAIL__FROM"),
            ] {
                jail.set_env(old, "x");
                let error = Config::load(None, serde_json::json!({}))
                    .unwrap_err()
                    .to_string();
                assert!(
                    error.contains(&format!("`{old}` is not a setting"))
                        && error.contains(&format!("did you mean `{new}`?")),
                    "{error}"
                );
                jail.clear_env();
            }
            jail.set_env("OXCART_HTP__LISTEN", "x");
            let error = Config::load(None, serde_json::json!({}))
                .unwrap_err()
                .to_string();
            assert!(error.contains("(did you mean `http`?)"), "{error}");
            jail.clear_env();
            // Variables of other tools, and those that are not settings, are left alone.
            jail.set_env("OXCART_TEST_POSTGRES", "postgres://x");
            jail.set_env("OXCART_LOG", "debug");
            jail.set_env("OXCART_LIBRDKAFKA_CLIENT_RACK", "a");
            Config::load(None, serde_json::json!({})).map_err(|e| *e)?;
            Ok(())
        });
    }

    /// The server's settings start from each service's own defaults, as the Lambda
    /// functions do (`oxcart-lambda`'s `the_defaults_are_the_services_own`): no section is
    /// rebuilt field by field, so none can drift.
    #[test]
    fn the_defaults_are_the_services_own() {
        let config = Config::default();
        assert_eq!(config.orders, OrdersConfig::default());
        assert_eq!(config.users, UsersConfig::default());
        assert_eq!(config.payments, PaymentsConfig::default());
        assert_eq!(config.http, HttpConfig::default());
        assert_eq!(config.database.sqlite, SqliteConfig::default());
        assert_eq!(config.database.postgres, PgConfig::default());
        assert_eq!(config.retry(), RetryPolicy::default());
    }

    #[test]
    fn bad_values_name_the_setting() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OXCART_HTTP__REQUEST_TIMEOUT", "soon");
            let error = Config::load(None, serde_json::json!({})).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("`OXCART_HTTP__REQUEST_TIMEOUT`: invalid value string \"soon\""),
                "{error}"
            );
            Ok(())
        });
    }
}
