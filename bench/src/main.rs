//! `huddle-bench`: a load generator for huddle and any Socket.IO v5 server.
//!
//! It speaks Engine.IO v4 / Socket.IO v5 over WebSocket itself (see
//! `proto.rs`), signs its own JWTs, sets up conversations through the HTTP
//! API (skipped with `--peer`, whose server accepts any conversation id),
//! and runs one scenario: `conns`, `fanout`, `echo`, `upload`, or `smoke`
//! (all of them, tiny, with sanity checks, for CI). It runs on one thread so
//! that pinned to one core it measures the server, not itself; every run
//! prints exactly one JSON line on stdout, logs go to stderr.

mod client;
mod echo;
mod http;
mod procstat;
mod proto;
mod rooms;
mod scrape;
mod upload;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "huddle-bench", version, about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Flags every scenario takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Server URL, `http://HOST:PORT`; repeat for several nodes (each room's
    /// members alternate between them, so every room spans the nodes; upload
    /// clients go round-robin). Default http://127.0.0.1:3000.
    #[arg(long = "url", global = true)]
    urls: Vec<String>,
    /// HS256 secret of the tokens the bench signs (the server's JWT_SECRET).
    #[arg(long, env = "JWT_SECRET", global = true, default_value = "")]
    jwt_secret: String,
    /// Server process whose CPU and memory are counted; repeat (Redis too).
    #[arg(long = "server-pid", global = true)]
    server_pids: Vec<u32>,
    /// A database process (the 2-node runs' MongoDB) whose CPU is reported
    /// apart, as `db_cpu`, and not counted in `server_cpu`; repeatable.
    #[arg(long = "db-pid", global = true)]
    db_pids: Vec<u32>,
    /// The target is the Node.js peer: no HTTP setup, synthetic conversation ids.
    #[arg(long, global = true)]
    peer: bool,
    /// Seconds measured.
    #[arg(long, global = true, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, global = true, default_value_t = 2.0)]
    warmup: f64,
    /// Spread connections over 127.0.0.1 … 127.0.0.N as source addresses.
    #[arg(long, global = true, default_value_t = 1)]
    source_ips: u8,
    /// A name for this run, copied into the result line.
    #[arg(long, global = true)]
    label: Option<String>,
    /// Handshakes in progress at once.
    #[arg(long, global = true, default_value_t = 200)]
    connect_concurrency: usize,
}

impl Common {
    fn urls(&self) -> Vec<String> {
        if self.urls.is_empty() {
            vec!["http://127.0.0.1:3000".to_owned()]
        } else {
            self.urls.clone()
        }
    }

    fn targets(&self) -> Result<Vec<client::Target>, String> {
        self.urls()
            .iter()
            .map(|u| client::Target::parse(u))
            .collect()
    }

    fn target_name(&self) -> &'static str {
        if self.peer {
            "peer"
        } else {
            "huddle"
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Idle authenticated connections: how many stay, server memory per connection.
    Conns {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Seconds to keep them idle before probing each one.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
    },
    /// Publishers send into rooms of subscribers: latency, loss, CPU per delivery.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Messages per second, all publishers together.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Publisher connections (default: one per room).
        #[arg(long, default_value_t = 0)]
        publishers: usize,
        #[arg(long, default_value_t = 100)]
        text_bytes: usize,
        /// Publishers send on a fixed grid (the start of each period)
        /// instead of at a random point of each period: how runs were
        /// paced before (see the README: a grid in step with the kernel's
        /// tick skews the user/system split of CPU time).
        #[arg(long)]
        even_pacing: bool,
    },
    /// One client, sequential send_message with ack: round-trip times.
    Echo {
        #[arg(long, default_value_t = 1000)]
        count: u64,
        #[arg(long, default_value_t = 100)]
        text_bytes: usize,
    },
    /// Concurrent file uploads: MB/s and server CPU per MB.
    Upload {
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value_t = 65536)]
        chunk_size: usize,
        #[arg(long, default_value_t = 8)]
        in_flight: usize,
        #[arg(long, default_value_t = 16 * 1024 * 1024)]
        file_size: usize,
        #[arg(long, value_enum, default_value_t = upload::Mode::Base64)]
        mode: upload::Mode,
    },
    /// A few seconds of every scenario with sanity checks (CI); no timing thresholds.
    Smoke,
}

/// A short id that keeps users and conversations of different runs apart.
pub fn run_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{:x}{}",
        nanos & 0xff_ffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn check(failures: &mut Vec<String>, what: &str, ok: bool, result: &Value) {
    if !ok {
        failures.push(format!("{what}: {result}"));
    }
}

/// Every scenario, tiny, each checked for sane results.
async fn smoke(common: &Common) -> Result<Value, String> {
    let mut c = common.clone();
    c.duration = c.duration.min(2.0);
    c.warmup = c.warmup.min(0.5);
    let mut failures = Vec::new();
    let mut results = Vec::new();

    let r = rooms::conns(&c, 20, 0.5).await?;
    check(
        &mut failures,
        "conns",
        r["alive_after_hold"] == 20 && r["errors"] == 0,
        &r,
    );
    results.push(r);

    let a = rooms::FanoutArgs {
        subscribers: 20,
        rooms: 2,
        publishers: 0,
        rate: 50.0,
        text_bytes: 100,
        even_pacing: false,
    };
    let r = rooms::fanout(&c, &a).await?;
    let ok = r["delivered"].as_u64().unwrap_or(0) > 0
        && r["delivered"] == r["expected"]
        && r["acks_failed"] == 0
        && r["errors"] == 0
        // huddle's /metrics counted the window's messages as stored.
        && (common.peer || r["store_ms"]["count"].as_f64().unwrap_or(0.0) > 0.0);
    check(&mut failures, "fanout", ok, &r);
    results.push(r);

    let r = echo::echo(&c, 50, 100).await?;
    check(&mut failures, "echo", r["acked"] == 50, &r);
    results.push(r);

    for mode in [
        upload::Mode::Base64,
        upload::Mode::Binary,
        upload::Mode::Http,
    ] {
        let a = upload::UploadArgs {
            clients: 2,
            chunk_size: 64 * 1024,
            in_flight: 4,
            file_size: 300 * 1024,
            mode,
        };
        let r = upload::upload(&c, a).await?;
        check(
            &mut failures,
            &format!("upload {mode:?}"),
            r["completed"] == 2,
            &r,
        );
        results.push(r);
    }
    for f in &failures {
        eprintln!("huddle-bench smoke: FAILED {f}");
    }
    Ok(json!({
        "scenario": "smoke",
        "target": c.target_name(),
        "ok": failures.is_empty(),
        "failures": failures.len(),
        "results": results,
    }))
}

async fn run(cli: Cli) -> Result<Value, String> {
    let c = &cli.common;
    if c.jwt_secret.is_empty() {
        return Err("--jwt-secret (or JWT_SECRET) is required".into());
    }
    match cli.cmd {
        Cmd::Conns { connections, hold } => rooms::conns(c, connections, hold).await,
        Cmd::Fanout {
            subscribers,
            rooms,
            rate,
            publishers,
            text_bytes,
            even_pacing,
        } => {
            let a = rooms::FanoutArgs {
                subscribers,
                rooms,
                publishers,
                rate,
                text_bytes,
                even_pacing,
            };
            rooms::fanout(c, &a).await
        }
        Cmd::Echo { count, text_bytes } => echo::echo(c, count, text_bytes).await,
        Cmd::Upload {
            clients,
            chunk_size,
            in_flight,
            file_size,
            mode,
        } => {
            let a = upload::UploadArgs {
                clients,
                chunk_size,
                in_flight,
                file_size,
                mode,
            };
            upload::upload(c, a).await
        }
        Cmd::Smoke => smoke(c).await,
    }
}

fn main() {
    let cli = Cli::parse();
    let label = cli.common.label.clone();
    // One thread: pinned to one core the bench measures the server, and its
    // tasks share counters and histograms without locks.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, run(cli));
    match result {
        Ok(mut v) => {
            if let (Some(label), Some(map)) = (&label, v.as_object_mut()) {
                map.insert("label".to_owned(), Value::from(label.as_str()));
            }
            println!("{v}");
            let failed = v["ok"] == false;
            std::process::exit(i32::from(failed));
        }
        Err(e) => {
            eprintln!("huddle-bench: {e}");
            println!("{}", json!({ "error": e, "label": label }));
            std::process::exit(2);
        }
    }
}
