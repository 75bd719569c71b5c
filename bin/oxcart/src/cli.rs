//! The command line: what each command takes. What each does is in `commands`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use oxcart::config::Services;
use serde_json::{Map, Value};

#[derive(Parser)]
#[command(
    name = "oxcart",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Serve the API (the default).
    Serve(ServeArgs),
    /// Apply pending database migrations, then exit.
    Migrate(Common),
    /// Manage accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage the token signing key.
    #[command(subcommand)]
    Keys(KeysCommand),
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
pub(crate) enum UsersCommand {
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
pub(crate) enum ConfigCommand {
    /// Load the settings as `serve` would (the defaults, the file, the environment, these
    /// flags), fail on anything wrong with the setting named, and print the settings in
    /// effect as TOML, secrets shown as `***`.
    Check(ServeArgs),
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Create the token signing key in the data directory unless one is there (or
    /// `auth.jwt_private_key` is set), and print its id. Run it once before starting
    /// processes that share the directory, so that one process makes the key, not each.
    Init(Common),
}

#[derive(Subcommand)]
pub(crate) enum ProjectionsCommand {
    /// Replay the event store into fresh read models.
    Rebuild(Common),
}

#[derive(Subcommand)]
pub(crate) enum DlqCommand {
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
#[derive(Args, Default)]
pub(crate) struct Common {
    /// A TOML file with settings (keys as in the README's configuration table).
    #[arg(long, env = "OXCART_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Directory for the SQLite database and the token signing key [default: ./data]
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Database URL, `sqlite:<path>` or `postgres://…` [default: sqlite:<data-dir>/oxcart.db]
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// auto (pretty on a terminal, JSON otherwise), pretty or json
    #[arg(long)]
    pub(crate) log_format: Option<String>,
}

#[derive(Args, Default)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    /// Services to run: `all` or a list such as `users,orders` [default: all]
    #[arg(long)]
    pub(crate) services: Option<String>,
    /// Do not apply migrations at start (a separate `oxcart migrate` owns them).
    #[arg(long)]
    pub(crate) no_migrate: bool,
}

/// The settings of the flags given, as nested as the file: only those given, so that an
/// absent flag leaves the layers below it alone.
#[derive(Default)]
pub(crate) struct Flags(Map<String, Value>);

impl Flags {
    fn set(mut self, key: &str, value: Option<Value>) -> Self {
        let Some(value) = value else { return self };
        let mut table = &mut self.0;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                table.insert(part.to_owned(), value);
                break;
            }
            let entry = table
                .entry(part.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else { break };
            table = next;
        }
        self
    }

    pub(crate) fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

impl Common {
    pub(crate) fn flags(&self) -> Flags {
        let path = |p: &PathBuf| Value::from(p.display().to_string());
        Flags::default()
            .set("data_dir", self.data_dir.as_ref().map(path))
            .set("database.url", self.database_url.clone().map(Value::from))
            .set(
                "telemetry.log_format",
                self.log_format.clone().map(Value::from),
            )
    }
}

impl ServeArgs {
    pub(crate) fn flags(&self) -> Flags {
        self.common
            .flags()
            .set(
                "http.listen",
                self.listen.map(|a| Value::from(a.to_string())),
            )
            .set("services", self.services.clone().map(Value::from))
            .set("migrate", self.no_migrate.then_some(Value::Bool(false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn only_given_flags_become_settings() {
        let cli = Cli::parse_from(["oxcart", "--listen", "0.0.0.0:9999", "--no-migrate"]);
        assert_eq!(
            cli.serve.flags().into_value(),
            serde_json::json!({ "http": { "listen": "0.0.0.0:9999" }, "migrate": false })
        );
        let cli = Cli::parse_from(["oxcart", "serve", "--data-dir", "/tmp/x"]);
        let Some(Command::Serve(args)) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(
            args.flags().into_value(),
            serde_json::json!({ "data_dir": "/tmp/x" })
        );
        let cli = Cli::parse_from(["oxcart", "migrate", "--database-url", "sqlite:a.db"]);
        let Some(Command::Migrate(common)) = cli.command else {
            panic!("not migrate")
        };
        assert_eq!(
            common.flags().into_value(),
            serde_json::json!({ "database": { "url": "sqlite:a.db" } })
        );
    }
}
