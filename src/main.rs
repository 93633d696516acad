//! The `hookd` binary: parses the command line, hands each command to `hookd::cli`,
//! prints a failure as one line on stderr and exits with the status the error carries.
//! A runtime is started only for the commands that need one (serve, listen); backup,
//! restore and compact are blocking.

use std::process::ExitCode;

use clap::Parser;
use hookd::cli::{self, Cli, CliError, Command, EX_FAILURE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout has gone (`| head`): it has all it wanted.
        Err(error) if matches!(error.downcast_ref(), Some(CliError::StdoutClosed)) => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("hookd: {}", one_line(&error));
            let code = error
                .downcast_ref::<CliError>()
                .map_or(EX_FAILURE, CliError::exit_code);
            ExitCode::from(code)
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args)?,
        Command::CheckConfig(args) => cli::check_config(&args)?,
        Command::Init(args) => cli::init(&args)?,
        Command::Listen(args) => listen(args)?,
        Command::Entity(args) => cli::admin::entity(&args)?,
        Command::Key(args) => cli::admin::key(&args)?,
        Command::Subscription(args) => cli::admin::subscription(&args)?,
        Command::Event(args) => cli::admin::event(&args)?,
        Command::Delivery(args) => cli::admin::delivery(&args)?,
        Command::Backup(args) => cli::backup(&args)?,
        Command::Restore(args) => cli::restore(&args)?,
        Command::Compact(args) => cli::compact(&args)?,
        Command::Store(cli::StoreCommand::Copy(args)) => cli::store_copy(&args)?,
        Command::Man => cli::print(String::from_utf8_lossy(&cli::man_page()?))?,
    }
    Ok(())
}

/// Store reads run on the blocking pool and each takes microseconds: a few threads
/// keep up, while tokio's default of 512 would spend memory (stacks, malloc arenas)
/// on threads that only wait for each other.
const MAX_BLOCKING_THREADS: usize = 16;

fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()?;
    runtime.block_on(cli::serve(&args))?;
    Ok(())
}

#[tokio::main]
async fn listen(args: cli::ListenArgs) -> Result<(), CliError> {
    cli::listen(args).await
}

/// The error and its sources joined by ": ", skipping a source whose text its parent
/// already shows (hookd's error messages usually include their source).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
