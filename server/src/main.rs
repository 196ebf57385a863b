//! `realtime-bridge` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use realtime_bridge::cli::{Cli, Command, LogFormat};
use realtime_bridge::commands::{self, CommandError};
use realtime_bridge::{run, shutdown_signal, Config, ServerError};
use tracing_subscriber::EnvFilter;

/// sysexits EX_USAGE: a bad flag or value.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("realtime-bridge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_format);
            let config = match Config::from_args(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("realtime-bridge: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            let listener = match realtime_bridge::bind(args.listen, args.listen_backlog) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("realtime-bridge: --listen: cannot listen on {}: {e}", args.listen);
                    return ExitCode::from(EX_USAGE);
                }
            };
            match run(listener, config, shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ ServerError::Config(_)) => {
                    eprintln!("realtime-bridge: {e}");
                    ExitCode::from(EX_USAGE)
                }
                Err(e) => {
                    tracing::error!(error = %e, "bridge stopped");
                    eprintln!("realtime-bridge: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Send(args) => report(commands::send(args, &mut std::io::stdout()).await),
        Command::Token(args) => report(commands::token(&args, &mut std::io::stdout())),
        Command::Listen(args) => {
            let mut stdout = std::io::stdout();
            tokio::select! {
                r = commands::listen(args, &mut stdout) => report(r),
                _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
            }
        }
    }
}

fn report(r: Result<(), CommandError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("realtime-bridge: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

/// Prints help/version as clap does; any other error as one line naming the flag, exit 64.
fn clap_error(e: &clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ErrorKind};
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
        _ => {}
    }
    // clap's own text is several lines with a usage block; keep its first line, which
    // names the flag and the problem, and make sure the flag is in it.
    let rendered = e.render().to_string();
    let mut lines = rendered.lines();
    let mut first = lines.next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_owned();
    // Some first lines end with ':' and list the arguments on the next ones ("the following
    // required arguments were not provided:"): bring them onto the one line.
    if first.ends_with(':') {
        let items: Vec<&str> = lines.take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
        if !items.is_empty() {
            first = format!("{first} {}", items.join(", "));
        }
    }
    let flag = e.get(ContextKind::InvalidArg).map(ToString::to_string);
    let line = match flag {
        Some(f) if !first.contains(f.split_whitespace().next().unwrap_or(&f)) => format!("{f}: {first}"),
        _ => first,
    };
    eprintln!("realtime-bridge: {line}");
    ExitCode::from(EX_USAGE)
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
