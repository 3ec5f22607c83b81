//! `gaia-fake-telegram`: the fake Telegram Bot API as a small server for demos and manual
//! testing. It listens on `--bind` (default `127.0.0.1:8081`), prints its base URL and token,
//! and serves until Ctrl-C. Point Gaia at it with `TELEGRAM_API_URL` and `TELEGRAM_BOT_TOKEN`.
//!
//! ```text
//! gaia-fake-telegram [--bind ADDR] [--token TOKEN]
//! ```

use std::process::ExitCode;

use gaia_testkit::fake_telegram::{FAKE_TOKEN, FakeTelegram};

const USAGE: &str = "usage: gaia-fake-telegram [--bind ADDR] [--token TOKEN]\n\
    Serves a fake Telegram Bot API (default 127.0.0.1:8081) until Ctrl-C.";

#[tokio::main]
async fn main() -> ExitCode {
    let mut bind = "127.0.0.1:8081".to_owned();
    let mut token = FAKE_TOKEN.to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let slot = match name.as_str() {
            "--bind" => &mut bind,
            "--token" => &mut token,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("gaia-fake-telegram: unknown argument '{arg}'\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        match inline.or_else(|| args.next()) {
            Some(v) if !v.is_empty() => *slot = v,
            _ => {
                eprintln!("gaia-fake-telegram: {name} needs a value\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let fake = match FakeTelegram::start_on(&bind, &token).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gaia-fake-telegram: cannot listen on {bind}: {e}");
            return ExitCode::from(2);
        }
    };
    println!("fake Telegram Bot API at {}", fake.base_url());
    println!("TELEGRAM_API_URL={}", fake.base_url());
    println!("TELEGRAM_BOT_TOKEN={}", fake.token());
    println!("(Ctrl-C to stop)");
    let _ = tokio::signal::ctrl_c().await;
    let sent = fake.sent_messages().len();
    fake.shutdown().await;
    println!("stopped after {sent} sent messages");
    ExitCode::SUCCESS
}
