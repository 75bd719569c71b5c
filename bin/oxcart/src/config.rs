//! The configuration of one oxcart process.
//!
//! Layers, each overriding the one before: built-in defaults, a TOML file (`--config` or
//! `OXCART_CONFIG`), the ecosystem's conventional variables (`DATABASE_URL`), `OXCART_*`
//! variables (`OXCART_LISTEN`, `OXCART_TOKEN_TTL`, …: the setting's name upper-cased),
//! and finally command-line flags. Keys are flat, so a setting has the same name in
//! every layer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use oxcart_events::consumer::RetryPolicy;
use oxcart_orders::OrdersConfig;
use oxcart_platform::http::HttpConfig;
use oxcart_platform::telemetry::LogFormat;
use oxcart_postgres::PgConfig;
use oxcart_sqlite::{SqliteConfig, Synchronous};
use oxcart_users::UsersConfig;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The services one process can run. All run by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Users,
    Catalog,
    Orders,
    Payments,
    Notifications,
    Invoices,
    Analytics,
}

impl Service {
    pub const ALL: [Service; 7] = [
        Self::Users,
        Self::Catalog,
        Self::Orders,
        Self::Payments,
        Self::Notifications,
        Self::Invoices,
        Self::Analytics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Catalog => "catalog",
            Self::Orders => "orders",
            Self::Payments => "payments",
            Self::Notifications => "notifications",
            Self::Invoices => "invoices",
            Self::Analytics => "analytics",
        }
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

/// Kafka's defaults, here so that a build without Kafka has the same settings.
struct KafkaDefaults {
    prefix: String,
    partitions: i32,
    replication: i32,
    relay_batch: usize,
    relay_interval: Duration,
}

impl Default for KafkaDefaults {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            partitions: 3,
            replication: 1,
            relay_batch: 500,
            relay_interval: Duration::from_millis(100),
        }
    }
}

/// Every setting of a process, flat: the key is the same in the TOML file, as an
/// `OXCART_<KEY>` variable and (for the common ones) as a `--key` flag.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub services: Services,
    /// Where the SQLite database and the token signing key live.
    pub data_dir: PathBuf,
    /// `sqlite:<path>` (defaults to `<data_dir>/oxcart.db`), or
    /// `postgres://user:pass@host:port/db` for PostgreSQL (directly or through PgBouncer).
    pub database_url: Option<String>,
    /// PostgreSQL read replicas, comma-separated: the query endpoints read from them in
    /// turn. Unset: the primary serves reads.
    pub database_read_url: Option<String>,
    /// Where `oxcart migrate` applies PostgreSQL migrations: the primary, directly, when
    /// `database_url` goes through a transaction-pooling PgBouncer. Defaults to
    /// `database_url`.
    pub database_migration_url: Option<String>,
    /// PostgreSQL: connections per pool (the primary's, and each replica's).
    pub database_max_connections: u32,
    /// PostgreSQL: connections each pool keeps open when idle.
    pub database_min_connections: u32,
    #[serde(with = "humantime_serde")]
    pub database_acquire_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub database_idle_timeout: Duration,
    /// `host:port,…`: carry events over Kafka instead of the embedded log (needs a build
    /// with `--features kafka`, and PostgreSQL so that every process shares the log).
    pub kafka_brokers: Option<String>,
    /// Put before every topic and consumer-group name, to share a cluster.
    pub kafka_prefix: String,
    /// Partitions of each topic created at start.
    pub kafka_partitions: i32,
    /// Replication factor of each topic created at start.
    pub kafka_replication: i32,
    /// Events the outbox relay publishes per round.
    pub kafka_relay_batch: usize,
    /// How often an idle relay looks for events other processes appended.
    #[serde(with = "humantime_serde")]
    pub kafka_relay_interval: Duration,
    /// librdkafka properties for every Kafka client, by librdkafka's names: the `[kafka]`
    /// table of the file, then `OXCART_KAFKA__<NAME>` variables (`OXCART_KAFKA__SECURITY_PROTOCOL`
    /// is `security.protocol`). TLS, SASL and whatever else a managed cluster asks for.
    #[serde(skip_serializing)]
    pub kafka: BTreeMap<String, String>,
    /// Apply pending migrations at start. Off when a separate `oxcart migrate` step owns them.
    pub migrate: bool,
    pub log_format: LogFormat,
    /// PEM (PKCS#8 Ed25519) key tokens are signed with; generated into the data directory
    /// when absent.
    #[serde(skip_serializing)]
    pub jwt_private_key: Option<SecretString>,
    pub listen: SocketAddr,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub sqlite_synchronous: Synchronous,
    pub sqlite_reader_connections: u32,
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub read_wait: Duration,
    /// Attempts per event before a consumer dead-letters it.
    pub consumer_max_attempts: u32,
    /// The first retry's delay; later ones double (with jitter) up to `consumer_retry_max`.
    #[serde(with = "humantime_serde")]
    pub consumer_retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub consumer_retry_max: Duration,
    /// How long the simulated provider takes to answer for `tok_slow`.
    #[serde(with = "humantime_serde")]
    pub payment_slow_delay: Duration,
    /// `smtp://host:port` (or `smtps://user:pass@host`): send e-mail over SMTP. When
    /// unset, e-mails are written as `.eml` files to `mail_dir`.
    #[serde(skip_serializing)]
    pub smtp_url: Option<SecretString>,
    /// Where e-mails go without SMTP; defaults to `<data_dir>/mail`.
    pub mail_dir: Option<PathBuf>,
    /// The sender of every e-mail.
    pub mail_from: String,
    /// `http://catalog:8080`: orders read prices from the catalog service over HTTP
    /// instead of from its tables. For a split where orders and catalog do not share a
    /// database schema.
    pub catalog_url: Option<String>,
    /// A PEM file of CA certificates that SMTP and calls between services (`catalog_url`)
    /// trust besides the public roots: for a relay or a mesh with a private CA.
    /// (PostgreSQL takes its CA in the URL, `sslrootcert=`; Kafka as the property
    /// `ssl.ca.location`; OTLP from `OTEL_EXPORTER_OTLP_CERTIFICATE`.)
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        let (http, sqlite, postgres) = (
            HttpConfig::default(),
            SqliteConfig::default(),
            PgConfig::default(),
        );
        let kafka = KafkaDefaults::default();
        Self {
            services: Services::all(),
            data_dir: PathBuf::from("data"),
            database_url: None,
            database_read_url: None,
            database_migration_url: None,
            database_max_connections: postgres.max_connections,
            database_min_connections: postgres.min_connections,
            database_acquire_timeout: postgres.acquire_timeout,
            database_idle_timeout: postgres.idle_timeout,
            kafka_brokers: None,
            kafka_prefix: kafka.prefix,
            kafka_partitions: kafka.partitions,
            kafka_replication: kafka.replication,
            kafka_relay_batch: kafka.relay_batch,
            kafka_relay_interval: kafka.relay_interval,
            kafka: BTreeMap::new(),
            migrate: true,
            log_format: LogFormat::Auto,
            jwt_private_key: None,
            listen: http.listen,
            request_timeout: http.request_timeout,
            max_body_bytes: http.max_body_bytes,
            shutdown_grace: http.shutdown_grace,
            sqlite_synchronous: sqlite.synchronous,
            sqlite_reader_connections: sqlite.reader_connections,
            token_ttl: UsersConfig::default().token_ttl,
            read_wait: OrdersConfig::default().read_wait,
            consumer_max_attempts: RetryPolicy::default().max_attempts,
            consumer_retry_base: RetryPolicy::default().base_delay,
            consumer_retry_max: RetryPolicy::default().max_delay,
            payment_slow_delay: oxcart_payments::provider::SimulatedProvider::DEFAULT_SLOW_DELAY,
            smtp_url: None,
            mail_dir: None,
            mail_from: "oxcart <orders@oxcart.localhost>".to_owned(),
            catalog_url: None,
            tls_ca_file: None,
        }
    }
}

/// Fails on a key of the file that no setting has, naming it and the setting it was
/// probably meant to be: a misspelt key (`listne = …`) would otherwise be ignored in
/// silence, and the setting it meant keep its default. Only the file is checked: the
/// environment holds `OXCART_*` variables of other tools too. A file that does not read
/// as the settings at all is left to the full load, whose error names the setting.
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
            let hint = closest_setting(key)
                .map(|setting| format!(" (did you mean `{setting}`?)"))
                .unwrap_or_default();
            Err(Box::new(figment::Error::from(format!(
                "{}: `{key}` is not a setting{hint}",
                file.display()
            ))))
        }
        _ => Ok(()),
    }
}

/// The setting whose name is nearest `key`, if one is near enough to be a slip.
fn closest_setting(key: &str) -> Option<&'static str> {
    serde_aux::serde_introspection::serde_introspect::<Config>()
        .iter()
        .map(|setting| (strsim::jaro_winkler(key, setting), *setting))
        .filter(|(similarity, _)| *similarity >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, setting)| setting)
}

impl Config {
    /// Loads every layer; `flags` holds only the settings given on the command line.
    pub fn load(file: Option<&Path>, flags: impl Serialize) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            refuse_unknown_keys(file)?;
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(Env::raw().only(&[
                "DATABASE_URL",
                "DATABASE_READ_URL",
                "DATABASE_MIGRATION_URL",
                "KAFKA_BROKERS",
                "SMTP_URL",
            ]))
            .merge(
                Env::prefixed("OXCART_")
                    .ignore(&["LOG", "CONFIG", "ADMIN_PASSWORD"])
                    // `OXCART_KAFKA__*` are librdkafka properties, read by `kafka()`.
                    .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("kafka__")),
            )
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)
    }

    /// The settings in effect as TOML, for `oxcart config check`: a password in a database
    /// URL, the secrets (`jwt_private_key`, `smtp_url`) and secret librdkafka properties
    /// shown as `***`. (The file's `[kafka]` table; `OXCART_KAFKA__*` variables are merged
    /// over it when Kafka starts.)
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        let mut shown = self.clone();
        let redact_all = |urls: &str| {
            urls.split(',')
                .map(|url| oxcart_postgres::redact(url.trim()))
                .collect::<Vec<_>>()
                .join(",")
        };
        for url in [
            &mut shown.database_url,
            &mut shown.database_read_url,
            &mut shown.database_migration_url,
        ] {
            *url = url.as_deref().map(redact_all);
        }
        let mut table = toml::Table::try_from(&shown)?;
        for (name, set) in [
            ("jwt_private_key", self.jwt_private_key.is_some()),
            ("smtp_url", self.smtp_url.is_some()),
        ] {
            if set {
                table.insert(name.to_owned(), "***".into());
            }
        }
        if !self.kafka.is_empty() {
            let properties = self
                .kafka
                .iter()
                .map(|(name, value)| {
                    let secret = oxcart_platform::redact::is_secret_property(name);
                    let value = if secret { "***" } else { value.as_str() };
                    (name.clone(), toml::Value::from(value))
                })
                .collect();
            table.insert("kafka".to_owned(), toml::Value::Table(properties));
        }
        toml::to_string(&table)
    }

    /// The database this process uses.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("oxcart.db").display()))
    }

    /// The read replicas' URLs.
    pub fn database_read_urls(&self) -> Vec<String> {
        self.database_read_url
            .iter()
            .flat_map(|urls| urls.split(','))
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Where PostgreSQL migrations are applied.
    pub fn database_migration_url(&self) -> String {
        self.database_migration_url
            .clone()
            .unwrap_or_else(|| self.database_url())
    }

    /// Kafka's settings; the properties of the file's `[kafka]` table, overridden by
    /// `OXCART_KAFKA__*` variables, and refused if they name one oxcart sets itself.
    #[cfg(feature = "kafka")]
    pub fn kafka(&self) -> Result<oxcart_kafka::KafkaConfig, oxcart_kafka::PropertyError> {
        use oxcart_kafka::Properties;
        let file = Properties::new(self.kafka.clone())?;
        let properties = file.merged(Properties::from_vars(std::env::vars())?);
        Ok(oxcart_kafka::KafkaConfig {
            brokers: self.kafka_brokers.clone().unwrap_or_default(),
            prefix: self.kafka_prefix.clone(),
            partitions: self.kafka_partitions.max(1),
            replication: self.kafka_replication.max(1),
            relay_batch: self.kafka_relay_batch.max(1),
            relay_interval: self.kafka_relay_interval,
            properties,
        })
    }

    pub fn postgres(&self) -> PgConfig {
        PgConfig {
            max_connections: self.database_max_connections,
            min_connections: self.database_min_connections,
            acquire_timeout: self.database_acquire_timeout,
            idle_timeout: self.database_idle_timeout,
        }
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.data_dir.join("jwt-ed25519.pem")
    }

    pub fn http(&self) -> HttpConfig {
        HttpConfig {
            listen: self.listen,
            request_timeout: self.request_timeout,
            max_body_bytes: self.max_body_bytes,
            shutdown_grace: self.shutdown_grace,
        }
    }

    pub fn sqlite(&self) -> SqliteConfig {
        SqliteConfig {
            synchronous: self.sqlite_synchronous,
            reader_connections: self.sqlite_reader_connections,
        }
    }

    pub fn users(&self) -> UsersConfig {
        UsersConfig {
            token_ttl: self.token_ttl,
        }
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.consumer_max_attempts.max(1),
            base_delay: self.consumer_retry_base,
            max_delay: self.consumer_retry_max,
        }
    }

    pub fn mail_dir(&self) -> PathBuf {
        self.mail_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("mail"))
    }

    pub fn orders(&self) -> OrdersConfig {
        OrdersConfig {
            read_wait: self.read_wait,
            ..OrdersConfig::default()
        }
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
                "listen = \"127.0.0.1:9000\"\ntoken_ttl = \"10m\"\nservices = \"users\"",
            )?;
            jail.set_env("DATABASE_URL", "sqlite:conventional.db");
            jail.set_env("OXCART_TOKEN_TTL", "20m");
            let config = Config::load(
                Some(Path::new("oxcart.toml")),
                serde_json::json!({ "services": "catalog" }),
            )
            .map_err(|e| *e)?;
            assert_eq!(config.listen.port(), 9000);
            assert_eq!(config.token_ttl.as_secs(), 1200);
            assert_eq!(config.database_url(), "sqlite:conventional.db");
            assert_eq!(config.services.to_string(), "catalog");

            jail.set_env("OXCART_DATABASE_URL", "sqlite:ours.db");
            let config = Config::load(None, serde_json::json!({})).map_err(|e| *e)?;
            assert_eq!(config.database_url(), "sqlite:ours.db");
            assert_eq!(config.listen.port(), 8080);
            Ok(())
        });
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn kafka_properties_come_from_the_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "oxcart.toml",
                "kafka_brokers = \"b1:9093\"\n[kafka]\n\"security.protocol\" = \"SSL\"\n\
                 \"ssl.ca.location\" = \"/etc/ca.pem\"",
            )?;
            jail.set_env("OXCART_KAFKA__SECURITY_PROTOCOL", "SASL_SSL");
            jail.set_env("OXCART_KAFKA__SASL_USERNAME", "shop");
            let config = Config::load(Some(Path::new("oxcart.toml")), serde_json::json!({}))
                .map_err(|e| *e)?;
            let kafka = config.kafka().unwrap();
            assert_eq!(kafka.brokers, "b1:9093");
            assert_eq!(kafka.properties.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(kafka.properties.get("ssl.ca.location"), Some("/etc/ca.pem"));
            assert_eq!(kafka.properties.get("sasl.username"), Some("shop"));

            jail.set_env("OXCART_KAFKA__GROUP_ID", "mine");
            let config = Config::load(None, serde_json::json!({})).map_err(|e| *e)?;
            let error = config.kafka().unwrap_err().to_string();
            assert!(error.contains("`group.id`"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_misspelt_key_in_the_file_is_refused_with_the_setting_it_meant() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "oxcart.toml",
                "listne = \"127.0.0.1:9000\"\n[kafka]\n\"security.protocol\" = \"SSL\"",
            )?;
            let error = Config::load(Some(Path::new("oxcart.toml")), serde_json::json!({}))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("`listne` is not a setting (did you mean `listen`?)"),
                "{error}"
            );
            jail.create_file("far.toml", "colour = \"blue\"")?;
            let error = Config::load(Some(Path::new("far.toml")), serde_json::json!({}))
                .unwrap_err()
                .to_string();
            assert!(error.contains("`colour` is not a setting"), "{error}");
            assert!(!error.contains("did you mean"), "{error}");
            // Every real key, the librdkafka table's included, still loads.
            jail.create_file(
                "good.toml",
                "listen = \"127.0.0.1:9000\"\nsmtp_url = \"smtp://relay:25\"\n\
                 [kafka]\n\"security.protocol\" = \"SSL\"",
            )?;
            Config::load(Some(Path::new("good.toml")), serde_json::json!({})).map_err(|e| *e)?;
            Ok(())
        });
    }

    /// The server's settings start from each service's own defaults, as the Lambda
    /// functions do (`oxcart-lambda`'s `the_defaults_are_the_services_own`).
    #[test]
    fn the_defaults_are_the_services_own() {
        let config = Config::default();
        assert_eq!(config.orders(), OrdersConfig::default());
        assert_eq!(config.users(), UsersConfig::default());
        assert_eq!(config.http(), HttpConfig::default());
        assert_eq!(config.sqlite(), SqliteConfig::default());
        assert_eq!(config.postgres(), PgConfig::default());
        assert_eq!(config.retry(), RetryPolicy::default());
        assert_eq!(
            config.payment_slow_delay,
            oxcart_payments::provider::SimulatedProvider::DEFAULT_SLOW_DELAY
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OXCART_REQUEST_TIMEOUT", "soon");
            let error = Config::load(None, serde_json::json!({})).unwrap_err();
            assert!(
                error.to_string().contains("REQUEST_TIMEOUT")
                    && error.to_string().contains("OXCART_"),
                "{error}"
            );
            Ok(())
        });
    }
}
