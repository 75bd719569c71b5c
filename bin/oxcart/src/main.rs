//! `oxcart`: the one binary. Without a subcommand it serves (`oxcart serve`).

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use oxcart::config::{Config, Services};
use oxcart::{App, migrate, open_database, signing_key};
use oxcart_events::EventStore;
use oxcart_events::consumer::{DeadLetters as _, replay};
use oxcart_platform::metrics::Metrics;
use oxcart_platform::shutdown;
use oxcart_platform::telemetry;
use oxcart_sql::{DbDeadLetters, SqlEventStore};
use oxcart_users::Users;
use oxcart_users::domain::Registration;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// jemalloc rather than the system's allocator, for memory given back. glibc keeps what a
/// thread freed in that thread's arena, and each password check (Argon2id, 19 MiB) left
/// 19 MiB resident for good: a server that had seen two sign-ins held 58 MB idle where it
/// had started with 22. jemalloc's background thread returns unused pages to the system
/// within about twenty seconds (24 MB idle again), and at saturation it holds less (66
/// MB against 78), at the same throughput. (mimalloc, tried too, started at 40 MB.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "oxcart",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve(ServeArgs),
    /// Apply pending database migrations, then exit.
    Migrate(Common),
    /// Manage accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage read models.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Inspect and replay dead letters: events a consumer gave up on.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the OpenAPI document.
    Openapi {
        /// Describe only these services.
        #[arg(long, default_value = "all")]
        services: Services,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create an administrator account. The password comes from --password-stdin, or
    /// OXCART_ADMIN_PASSWORD, or --password (visible to other users of the machine).
    CreateAdmin {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, env = "OXCART_ADMIN_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load the settings as `serve` would (the defaults, the file, the environment, these
    /// flags), fail on anything wrong with the setting named, and print the settings in
    /// effect as TOML, secrets shown as `***`.
    Check(ServeArgs),
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Replay the event store into fresh read models.
    Rebuild(Common),
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters, oldest first: unresolved ones unless --all.
    List {
        #[command(flatten)]
        common: Common,
        /// Only this consumer group (`email-service`, `payment-service`, …).
        #[arg(long)]
        group: Option<String>,
        /// Include letters already replayed successfully.
        #[arg(long)]
        all: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a dead letter's event through its consumer once more; on success the letter is
    /// resolved. Fix the cause first (a mail server down, a bug deployed): a replay that
    /// fails again leaves the letter in place. Safe to repeat: consumers skip events they
    /// have already applied.
    Replay {
        #[command(flatten)]
        common: Common,
        /// The letter's id, from `oxcart dlq list`.
        id: uuid::Uuid,
    },
}

/// Settings every command shares. Flags win over OXCART_* variables, which win over the
/// config file.
#[derive(Args, Serialize, Default)]
struct Common {
    /// A TOML file with settings (keys as in the README's configuration table).
    #[arg(long, env = "OXCART_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Directory for the SQLite database and the token signing key [default: ./data]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Database URL, `sqlite:<path>` or `postgres://…` [default: sqlite:<data-dir>/oxcart.db]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    /// auto (pretty on a terminal, JSON otherwise), pretty or json
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
}

#[derive(Args, Serialize, Default)]
struct ServeArgs {
    #[command(flatten)]
    #[serde(flatten)]
    common: Common,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Services to run: `all` or a list such as `users,orders` [default: all]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    services: Option<String>,
    /// Do not apply migrations at start (a separate `oxcart migrate` owns them).
    #[arg(long)]
    #[serde(
        skip_serializing_if = "std::ops::Not::not",
        rename = "migrate",
        serialize_with = "negate"
    )]
    no_migrate: bool,
}

fn negate<S: serde::Serializer>(value: &bool, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bool(!value)
}

/// The configuration of a short-lived command, with logging set up (and no tracing).
fn load(common: &Common, flags: impl Serialize) -> anyhow::Result<Config> {
    let config = Config::load(common.config.as_deref(), flags).context("invalid configuration")?;
    telemetry::init_logging(config.log_format);
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: libraries often repeat their
/// cause's words in their own message (`…: invalid peer certificate: UnknownIssuer`), and
/// the chain would say it twice.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Migrate(common)) => {
            let config = load(&common, &common)?;
            let db = open_database(&config).await?;
            migrate(&config, &db).await.context("applying migrations")?;
            db.close().await;
            println!(
                "migrations applied to {}",
                oxcart_postgres::redact(&config.database_url())
            );
            Ok(())
        }
        Some(Command::Users(UsersCommand::CreateAdmin {
            common,
            email,
            name,
            password,
            password_stdin,
        })) => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from stdin")?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            } else {
                password.context(
                    "give the password with --password-stdin, OXCART_ADMIN_PASSWORD or --password",
                )?
            };
            let config = load(&common, &common)?;
            let db = open_database(&config).await?;
            migrate(&config, &db).await.context("applying migrations")?;
            let users = Users::new(db.clone(), signing_key(&config)?, &config.users());
            let registration = Registration::parse(&email, password, name).map_err(|errors| {
                let problems: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {}",
                            e.pointer.as_deref().unwrap_or("#").trim_start_matches("#/"),
                            e.detail
                        )
                    })
                    .collect();
                anyhow::anyhow!("{}", problems.join("; "))
            })?;
            let admin = users
                .create_admin(registration)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            db.close().await;
            println!("created admin {} ({})", admin.email, admin.id);
            Ok(())
        }
        Some(Command::Projections(ProjectionsCommand::Rebuild(common))) => {
            let config = load(&common, &common)?;
            let db = open_database(&config).await?;
            migrate(&config, &db).await.context("applying migrations")?;
            let store: Arc<dyn EventStore> = Arc::new(SqlEventStore::new(db.clone()));
            let started = std::time::Instant::now();
            let rebuilt = oxcart_orders::read_model::rebuild(&db, store.as_ref())
                .await
                .map_err(|e| anyhow::anyhow!("rebuild failed: {e}"))?;
            db.close().await;
            println!(
                "rebuilt order read model: {} events, {} orders, up to position {} in {:.2?}",
                rebuilt.events,
                rebuilt.orders,
                rebuilt.position,
                started.elapsed()
            );
            Ok(())
        }
        Some(Command::Dlq(DlqCommand::List {
            common,
            group,
            all,
            json,
        })) => {
            let config = load(&common, &common)?;
            let db = open_database(&config).await?;
            let letters = DbDeadLetters(db.clone())
                .list(group.as_deref(), all)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read the dead letters: {e}"))?;
            db.close().await;
            for letter in &letters {
                if json {
                    let line = serde_json::json!({
                        "id": letter.id,
                        "group": letter.group,
                        "eventId": letter.event.event.event_id,
                        "eventType": letter.event.event.event_type,
                        "aggregateId": letter.event.event.aggregate_id,
                        "attempts": letter.attempts,
                        "error": letter.error,
                        "parkedAt": letter.parked_at,
                        "resolvedAt": letter.resolved_at,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{}  {:<18} {:<22} attempts {:<3} {}{}\n    {}",
                        letter.id,
                        letter.group,
                        letter.event.event.event_type,
                        letter.attempts,
                        letter.parked_at.format("%Y-%m-%d %H:%M:%S"),
                        if letter.resolved_at.is_some() {
                            "  (resolved)"
                        } else {
                            ""
                        },
                        letter.error
                    );
                }
            }
            if !json {
                eprintln!("{} dead letter(s)", letters.len());
            }
            Ok(())
        }
        Some(Command::Dlq(DlqCommand::Replay { common, id })) => {
            let config = load(&common, &common)?;
            let db = open_database(&config).await?;
            migrate(&config, &db).await.context("applying migrations")?;
            let key = signing_key(&config)?;
            let store = Arc::new(SqlEventStore::new(db.clone()));
            let peers = oxcart::Peers::connect(&config).await?;
            let assembly = oxcart::assemble(&config, &db, &store, &key, &Metrics::new(), &peers)?;
            let outcome = replay(&assembly.handlers, &DbDeadLetters(db.clone()), id).await;
            db.close().await;
            let letter = outcome.map_err(|e| anyhow::anyhow!("replay of {id} failed: {e}"))?;
            println!(
                "replayed {} ({} for {}): resolved",
                letter.id, letter.event.event.event_type, letter.group
            );
            Ok(())
        }
        Some(Command::Config(ConfigCommand::Check(args))) => {
            let config = Config::load(args.common.config.as_deref(), &args)
                .context("invalid configuration")?;
            print!("{}", config.to_redacted_toml()?);
            Ok(())
        }
        Some(Command::Openapi { services }) => {
            println!("{}", oxcart::openapi(&services).to_pretty_json()?);
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config =
        Config::load(args.common.config.as_deref(), &args).context("invalid configuration")?;
    let telemetry = telemetry::init(&telemetry::Settings {
        service_name: config.services.service_name(),
        service_version: oxcart::VERSION.to_owned(),
        database_system: Some(
            if oxcart_postgres::is_postgres_url(&config.database_url()) {
                "postgresql"
            } else {
                "sqlite"
            },
        ),
        log_format: config.log_format,
    })?;
    if let Some(export) = telemetry.export() {
        tracing::info!(export, "exporting traces over OTLP");
    }
    let served = async {
        probe_collector(&telemetry).await?;
        let app = App::build(config).await?;
        let token = CancellationToken::new();
        let trigger = token.clone();
        tokio::spawn(async move {
            shutdown::signal().await;
            trigger.cancel();
        });
        app.run(token).await
    }
    .await;
    // Also after a failed start: its spans explain the failure.
    telemetry.shutdown().await;
    served
}

/// Reaches the OTLP collector once: a certificate it refuses stops the start (spans would
/// be lost, quietly, for as long as the process runs); one that is not up yet does not.
async fn probe_collector(telemetry: &telemetry::Telemetry) -> anyhow::Result<()> {
    let (Some(export), Err(error)) = (telemetry.export(), telemetry.probe().await) else {
        return Ok(());
    };
    if let Some(reason) = oxcart_platform::tls::failure(&*error) {
        anyhow::bail!("OTEL_EXPORTER_OTLP_ENDPOINT: {export}: TLS refused: {reason}");
    }
    tracing::warn!(%error, export, "the OTLP collector cannot be reached yet; spans wait in the queue");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_one_line_with_each_cause_once() {
        let io = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let error = anyhow::Error::new(io)
            .context("error communicating with database: invalid peer certificate: UnknownIssuer")
            .context("cannot connect to PostgreSQL at postgres://db/x");
        assert_eq!(
            one_line(&error),
            "cannot connect to PostgreSQL at postgres://db/x: error communicating with \
             database: invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn only_given_flags_become_settings() {
        let cli = Cli::parse_from(["oxcart", "--listen", "0.0.0.0:9999", "--no-migrate"]);
        let flags = serde_json::to_value(&cli.serve).unwrap();
        assert_eq!(
            flags,
            serde_json::json!({ "listen": "0.0.0.0:9999", "migrate": false })
        );
        let cli = Cli::parse_from(["oxcart", "serve", "--data-dir", "/tmp/x"]);
        let Some(Command::Serve(args)) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(
            serde_json::to_value(&args).unwrap(),
            serde_json::json!({ "data_dir": "/tmp/x" })
        );
    }
}
