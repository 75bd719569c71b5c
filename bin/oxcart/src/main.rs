//! `oxcart`: the one binary. `main` parses the command line (`cli`) and hands it to the
//! command (`commands`). Without a subcommand it serves (`oxcart serve`).

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{
    Cli, Command, ConfigCommand, DlqCommand, KeysCommand, ProjectionsCommand, UsersCommand,
};

mod cli;
mod commands;

/// jemalloc rather than the system's allocator, for memory given back. glibc keeps what a
/// thread freed in that thread's arena, and each password check (Argon2id, 19 MiB) left
/// 19 MiB resident for good: a server that had seen two sign-ins held 58 MB idle where it
/// had started with 22. jemalloc's background thread returns unused pages to the system
/// within about twenty seconds (24 MB idle again), and at saturation it holds less (66
/// MB against 78), at the same throughput. (mimalloc, tried too, started at 40 MB.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        None => commands::serve(cli.serve).await,
        Some(Command::Serve(args)) => commands::serve(args).await,
        Some(Command::Migrate(common)) => commands::migrate_database(common).await,
        Some(Command::Users(UsersCommand::CreateAdmin {
            common,
            email,
            name,
            password,
            password_stdin,
        })) => commands::create_admin(common, email, name, password, password_stdin).await,
        Some(Command::Keys(KeysCommand::Init(common))) => commands::init_signing_key(common),
        Some(Command::Projections(ProjectionsCommand::Rebuild(common))) => {
            commands::rebuild_projections(common).await
        }
        Some(Command::Dlq(DlqCommand::List {
            common,
            group,
            all,
            json,
        })) => commands::list_dead_letters(common, group, all, json).await,
        Some(Command::Dlq(DlqCommand::Replay { common, id })) => {
            commands::replay_dead_letter(common, id).await
        }
        Some(Command::Config(ConfigCommand::Check(args))) => commands::check_config(args),
        Some(Command::Openapi { services }) => commands::print_openapi(services),
    }
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
}
