//! What each command does, once `main` has parsed it.

use std::io::BufRead;
use std::sync::Arc;

use anyhow::Context as _;
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
use tokio_util::sync::CancellationToken;

use crate::cli::{Common, Flags, ServeArgs};

/// The settings every layer gives, `common`'s file and `flags` included: the one way each
/// command loads them, so that `config check` shows what `serve` would run with.
fn settings(common: &Common, flags: Flags) -> anyhow::Result<Config> {
    Config::load(common.config.as_deref(), flags.into_value()).context("invalid configuration")
}

/// The configuration of a short-lived command, with logging set up (and no tracing).
fn load(common: &Common) -> anyhow::Result<Config> {
    let config = settings(common, common.flags())?;
    telemetry::init_logging(config.telemetry.log_format);
    Ok(config)
}

/// `oxcart keys init`: makes the signing key if there is none, and names it.
pub(crate) fn init_signing_key(common: Common) -> anyhow::Result<()> {
    let config = load(&common)?;
    let key = signing_key(&config)?;
    match &config.auth.jwt_private_key {
        Some(_) => println!(
            "the signing key is auth.jwt_private_key (kid {})",
            key.kid()
        ),
        None => println!(
            "the signing key is {} (kid {})",
            config.signing_key_path().display(),
            key.kid()
        ),
    }
    Ok(())
}

/// `oxcart migrate`: applies pending migrations.
pub(crate) async fn migrate_database(common: Common) -> anyhow::Result<()> {
    let config = load(&common)?;
    let db = open_database(&config).await?;
    migrate(&config, &db).await.context("applying migrations")?;
    db.close().await;
    println!(
        "migrations applied to {}",
        oxcart_postgres::redact(&config.database_url())
    );
    Ok(())
}

/// `oxcart users create-admin`: the password from standard input, the environment or
/// the flag, in that order of preference.
pub(crate) async fn create_admin(
    common: Common,
    email: String,
    name: Option<String>,
    password: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<()> {
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
    let config = load(&common)?;
    let db = open_database(&config).await?;
    migrate(&config, &db).await.context("applying migrations")?;
    let users = Users::new(db.clone(), signing_key(&config)?, &config.users);
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

/// `oxcart projections rebuild`: replays the log into fresh read models.
pub(crate) async fn rebuild_projections(common: Common) -> anyhow::Result<()> {
    let config = load(&common)?;
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

/// `oxcart dlq list`: dead letters, oldest first, as a table or JSON lines.
pub(crate) async fn list_dead_letters(
    common: Common,
    group: Option<String>,
    all: bool,
    json: bool,
) -> anyhow::Result<()> {
    let config = load(&common)?;
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

/// `oxcart dlq replay`: runs a dead letter's event through its consumer once more.
pub(crate) async fn replay_dead_letter(common: Common, id: uuid::Uuid) -> anyhow::Result<()> {
    let config = load(&common)?;
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

/// `oxcart config check`: the settings in effect, secrets hidden.
pub(crate) fn check_config(args: ServeArgs) -> anyhow::Result<()> {
    let config = settings(&args.common, args.flags())?;
    print!("{}", config.to_redacted_toml()?);
    Ok(())
}

/// `oxcart openapi`: the OpenAPI document of `services`.
pub(crate) fn print_openapi(services: Services) -> anyhow::Result<()> {
    println!("{}", oxcart::openapi(&services).to_pretty_json()?);
    Ok(())
}

/// `oxcart` or `oxcart serve`: serves until a signal, then drains.
pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = settings(&args.common, args.flags())?;
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
        log_format: config.telemetry.log_format,
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
