//! `gaia-bench outbox`: the outbox worker delivering to a fake Telegram Bot API in this
//! process. Without rate limits, end-to-end throughput (enqueue N messages over many chats, run
//! the worker until the fake has received them all) beside raw HTTP loops POSTing the same
//! `sendMessage` calls to the same fake, as many loops at once as the worker has lanes. With Telegram's limits, the sustained send rate over a
//! window as a share of the 30 messages/s Telegram allows, and how many of the arrivals
//! Telegram would have refused (429), judged from the fake's arrival times.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Args;
use gaia_core::Gaia;
use gaia_core::outbox::{Channel, NewMessage};
use gaia_core::time::parse_duration;
use gaia_server::hub::EventHub;
use gaia_server::senders::{Senders, worker};
use gaia_telegram::{BotClient, Limits};
use gaia_testkit::fake_telegram::FakeTelegram;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::exit::{self, BenchError, BenchResult, bench_error};
use crate::scratch::Backend;
use crate::settings::{Settings, open_store};

#[derive(Debug, Args)]
pub struct OutboxArgs {
    /// Messages sent by each side of the unlimited comparison.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    messages: usize,
    /// Chats the unlimited comparison's messages are spread over.
    #[arg(long, default_value_t = 200, value_name = "N")]
    chats: usize,
    /// How long the run under Telegram's limits is measured ("0" to skip it).
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    paced: String,
    /// Chats the paced run's messages are spread over (at least 30 for 30 messages/s at one
    /// message per second per chat).
    #[arg(long, default_value_t = 60, value_name = "N")]
    paced_chats: usize,
    /// Concurrent senders on each side: the worker's lanes, and as many raw HTTP loops.
    #[arg(long, default_value_t = gaia_server::senders::DEFAULT_LANES, value_name = "N")]
    senders: usize,
    /// Run the outbox on this PostgreSQL server instead of SQLite, in a scratch database
    /// created and dropped for each run.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// How long the fake Bot API waits before answering each call, for both sides: the round
    /// trip to Telegram's servers, which a fake in this process does not have ("0": none).
    #[arg(long, default_value = "0", value_name = "DURATION")]
    latency: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// How each side reaches the fake Bot API: this many senders at once, each call answered
/// after `latency`.
#[derive(Debug, Clone, Copy)]
struct Side {
    senders: usize,
    latency: Duration,
}

/// The paced run's goal: this share of Telegram's overall rate, and no 429s.
const GOAL_SHARE: f64 = 0.95;

/// No pacing at all.
fn unlimited() -> Limits {
    Limits {
        global_per_second: usize::MAX,
        per_chat_interval: Duration::ZERO,
        group_per_minute: usize::MAX,
    }
}

/// Private chats (positive ids): the per-group limit does not apply.
fn chat(i: usize, chats: usize) -> i64 {
    1_000_000 + (i % chats.max(1)) as i64
}

fn text(i: usize) -> String {
    format!("bench message {i}: deploy finished on host-{} ok", i % 17)
}

/// What reached the fake during one side's run.
#[derive(Debug)]
struct Arrivals {
    /// When the run started (before enqueueing, for the outbox).
    start: Instant,
    /// Enqueueing took this long (zero for the raw loop).
    enqueue: Duration,
    /// `sendMessage` arrivals at the fake: time and chat, in arrival order.
    calls: Vec<(Instant, i64)>,
    /// When the last wanted message arrived (or the window closed).
    end: Instant,
}

impl Arrivals {
    fn rate(&self) -> f64 {
        self.calls.len() as f64 / self.end.duration_since(self.start).as_secs_f64()
    }

    /// Rate counting from the worker's start, after enqueueing.
    fn send_rate(&self) -> f64 {
        let from = self.start + self.enqueue;
        self.calls.len() as f64 / self.end.duration_since(from).as_secs_f64()
    }
}

fn send_calls(fake: &FakeTelegram) -> Vec<(Instant, i64)> {
    let mut calls: Vec<(Instant, i64)> = fake
        .calls_to("sendMessage")
        .into_iter()
        .map(|c| {
            let chat = c.body["chat_id"]
                .as_i64()
                .or_else(|| c.body["chat_id"].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0);
            (c.at, chat)
        })
        .collect();
    calls.sort_by_key(|c| c.0);
    calls
}

/// POSTs `sendMessage` for messages `first, first + step, ...` below `n`, one after another.
async fn raw_sender(
    client: reqwest::Client,
    url: String,
    (first, step, n, chats): (usize, usize, usize, usize),
) -> Result<(), BenchError> {
    for i in (first..n).step_by(step) {
        let res = client
            .post(&url)
            .json(&json!({ "chat_id": chat(i, chats), "text": text(i) }))
            .send()
            .await
            .map_err(|e| bench_error("raw sendMessage", e))?;
        if !res.status().is_success() {
            return Err(bench_error("raw sendMessage", res.status()));
        }
        res.bytes()
            .await
            .map_err(|e| bench_error("raw sendMessage", e))?;
    }
    Ok(())
}

/// The raw baseline: `senders` clients at once, each POSTing its share of the `sendMessage`
/// calls one after another, as the worker's lanes do.
async fn raw_loop(n: usize, chats: usize, side: Side) -> Result<Arrivals, BenchError> {
    let fake = FakeTelegram::start().await;
    fake.set_latency(side.latency);
    let senders = side.senders;
    let client = reqwest::Client::new();
    let url = format!("{}/bot{}/sendMessage", fake.base_url(), fake.token());
    let start = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for first in 0..senders {
        loops.spawn(raw_sender(
            client.clone(),
            url.clone(),
            (first, senders, n, chats),
        ));
    }
    while let Some(done) = loops.join_next().await {
        done.map_err(|e| bench_error("raw sender", e))??;
    }
    let end = Instant::now();
    let calls = send_calls(&fake);
    fake.shutdown().await;
    Ok(Arrivals {
        start,
        enqueue: Duration::ZERO,
        calls,
        end,
    })
}

/// Enqueues `n` Telegram messages over `chats` chats in a fresh SQLite database (or scratch
/// PostgreSQL database on `postgres`), runs the outbox worker with `limits` until the fake has
/// received all `n` or `window` (from the worker's start) has passed, and returns what
/// arrived.
async fn through_outbox(
    settings: &Settings,
    postgres: Option<&str>,
    n: usize,
    chats: usize,
    limits: Limits,
    window: Option<Duration>,
    side: Side,
) -> Result<Arrivals, BenchError> {
    let fake = FakeTelegram::start().await;
    fake.set_latency(side.latency);
    let backend = match postgres {
        Some(server) => Backend::postgres(server).await?,
        None => Backend::sqlite()?,
    };
    let result = async {
        let store = open_store(&backend.url(), &settings.store_options()).await?;
        let gaia = Gaia::new(store);
        let messages: Vec<NewMessage> = (0..n)
            .map(|i| NewMessage {
                channel: Channel::Telegram,
                target: chat(i, chats).to_string(),
                kind: "alert".into(),
                payload: json!({ "text": text(i) }),
                dedupe_key: None,
            })
            .collect();
        let bot = BotClient::new(fake.base_url(), fake.token())
            .map_err(|e| bench_error("bot client", e))?;
        let mut senders = Senders::new(Some(bot), None).with_limits(limits);
        senders.lanes = side.senders;

        let start = Instant::now();
        for chunk in messages.chunks(500) {
            gaia.enqueue_messages(chunk).await?;
        }
        let enqueue = start.elapsed();
        let hub = EventHub::new(gaia.store().last_seq().await?);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(worker(
            gaia.clone(),
            hub,
            senders,
            Duration::from_millis(100),
            cancel.clone(),
        ));
        let from = Instant::now();
        let limit = window.unwrap_or(Duration::from_secs(600));
        let end = loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = Instant::now();
            if window.is_some_and(|w| now >= from + w) {
                break from + limit;
            }
            if fake.sent_count() >= n {
                break now;
            }
            if now >= from + limit {
                cancel.cancel();
                return Err(bench_error(
                    "the outbox worker",
                    format!("did not deliver {n} messages in {limit:?}"),
                ));
            }
        };
        cancel.cancel();
        let _ = task.await;
        let calls: Vec<(Instant, i64)> = send_calls(&fake)
            .into_iter()
            .filter(|c| c.0 <= end)
            .collect();
        Ok(Arrivals {
            start,
            enqueue,
            calls,
            end,
        })
    }
    .await;
    fake.shutdown().await;
    backend.finish().await?;
    result
}

/// How many arrivals Telegram would have refused under `limits`: a message within
/// `per_chat_interval` of the previous one to its chat, or one with `global_per_second` others
/// already in the second before it.
fn would_be_429s(calls: &[(Instant, i64)], limits: Limits) -> usize {
    let mut last: HashMap<i64, Instant> = HashMap::new();
    let mut refused = 0;

    for (i, &(at, chat)) in calls.iter().enumerate() {
        let global = i >= limits.global_per_second
            && at.duration_since(calls[i - limits.global_per_second].0) < Duration::from_secs(1);
        let per_chat = last
            .get(&chat)
            .is_some_and(|t| at.duration_since(*t) < limits.per_chat_interval);
        if global || per_chat {
            refused += 1;
        }
        last.insert(chat, at);
    }
    refused
}

pub async fn run(args: OutboxArgs, settings: &Settings) -> BenchResult {
    if args.messages == 0 || args.chats == 0 || args.paced_chats == 0 || args.senders == 0 {
        return Err(BenchError::bad_input(
            "--messages, --chats, --paced-chats and --senders must be at least 1",
        ));
    }
    // parse_duration refuses zero, which the help offers (to skip the paced run, or for no
    // latency).
    let zero_or = |s: &str| -> Result<Duration, BenchError> {
        if s.trim() == "0" {
            Ok(Duration::ZERO)
        } else {
            Ok(parse_duration(s)?)
        }
    };
    let paced = zero_or(&args.paced)?;
    let side = Side {
        senders: args.senders,
        latency: zero_or(&args.latency)?,
    };

    // Warm both paths up (connections, page cache), unmeasured.
    let warm = args.messages.min(200);
    raw_loop(warm, args.chats, side).await?;
    let pg = args.postgres.as_deref();
    through_outbox(settings, pg, warm, args.chats, unlimited(), None, side).await?;

    let raw = raw_loop(args.messages, args.chats, side).await?;
    let outbox = through_outbox(
        settings,
        pg,
        args.messages,
        args.chats,
        unlimited(),
        None,
        side,
    )
    .await?;
    let ratio = outbox.rate() / raw.rate();
    let send_ratio = outbox.send_rate() / raw.rate();

    let limits = Limits::default();
    let paced_run = if paced.is_zero() {
        None
    } else {
        // More than the window can take, so the queue never runs dry.
        let n = (limits.global_per_second as f64 * paced.as_secs_f64() * 1.2) as usize + 100;
        let a =
            through_outbox(settings, pg, n, args.paced_chats, limits, Some(paced), side).await?;
        // The first second's burst of 30 is allowed but not sustained: the rate counts from
        // one second after the first arrival to the end of the window.
        let rate = match a.calls.first() {
            Some(&(first, _)) if a.end > first + Duration::from_secs(2) => {
                let from = first + Duration::from_secs(1);
                let n = a.calls.iter().filter(|c| c.0 >= from).count();
                n as f64 / a.end.duration_since(from).as_secs_f64()
            }
            _ => a.calls.len() as f64 / paced.as_secs_f64(),
        };
        let share = rate / limits.global_per_second as f64;
        let refused = would_be_429s(&a.calls, limits);
        Some((a.calls.len(), rate, share, refused))
    };

    if args.json {
        let paced_json = paced_run.map(|(sent, rate, share, refused)| {
            json!({
                "seconds": paced.as_secs_f64(),
                "chats": args.paced_chats,
                "sent": sent,
                "rate_per_s": rate,
                "share_of_allowed": share,
                "would_be_429": refused,
                "goal_met": share >= GOAL_SHARE && refused == 0,
            })
        });
        println!(
            "{}",
            json!({
                "backend": if pg.is_some() { "postgres" } else { "sqlite" },
                "messages": args.messages,
                "chats": args.chats,
                "senders": args.senders,
                "latency_ms": side.latency.as_secs_f64() * 1e3,
                "raw_per_s": raw.rate(),
                "outbox_per_s": outbox.rate(),
                "outbox_send_per_s": outbox.send_rate(),
                "outbox_enqueue_ms": outbox.enqueue.as_secs_f64() * 1e3,
                "ratio": ratio,
                "send_ratio": send_ratio,
                "paced": paced_json,
            })
        );
        return Ok(exit::OK);
    }
    println!(
        "outbox ({}) -> fake Telegram answering after {} ms, {} messages over {} chats, {} senders, no rate limits",
        if pg.is_some() { "postgres" } else { "sqlite" },
        side.latency.as_millis(),
        args.messages,
        args.chats,
        args.senders
    );
    println!("  {:<34} {:>10}", "side", "msgs/s");
    println!(
        "  {:<34} {:>10.0}",
        format!("raw HTTP loops ({} at once)", args.senders),
        raw.rate()
    );
    println!(
        "  {:<34} {:>10.0}",
        "gaia outbox, end to end",
        outbox.rate()
    );
    println!(
        "  {:<34} {:>10.0}   (enqueue {:.0} ms, not counted)",
        "gaia outbox, worker only",
        outbox.send_rate(),
        outbox.enqueue.as_secs_f64() * 1e3
    );
    println!("  ratio gaia/raw: {ratio:.2} end to end, {send_ratio:.2} worker only (raw = 1.00)");
    if let Some((sent, rate, share, refused)) = paced_run {
        println!(
            "with Telegram's limits ({}/s overall, 1/s per chat), {:.0} s over {} chats:",
            limits.global_per_second,
            paced.as_secs_f64(),
            args.paced_chats
        );
        println!(
            "  sent {sent}; sustained (after the first second) {rate:.2} msgs/s = {:.1} % of the allowed rate (goal >= {:.0} %)",
            share * 100.0,
            GOAL_SHARE * 100.0
        );
        println!("  arrivals Telegram would have refused (429): {refused} (goal 0)");
        println!(
            "  goal {}",
            if share >= GOAL_SHARE && refused == 0 {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_follow_the_limits() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let limits = Limits::default();
        // Same chat twice within a second: one refusal.
        assert_eq!(would_be_429s(&[(ms(0), 1), (ms(500), 1)], limits), 1);
        assert_eq!(would_be_429s(&[(ms(0), 1), (ms(1000), 1)], limits), 0);
        // 31 chats within one second: the 31st is refused; spaced out, none is.
        let burst: Vec<_> = (0..31).map(|i| (ms(i * 30), i as i64)).collect();
        assert_eq!(would_be_429s(&burst, limits), 1);
        let spaced: Vec<_> = (0..90).map(|i| (ms(i * 34), i as i64)).collect();
        assert_eq!(would_be_429s(&spaced, limits), 0);
    }
}
