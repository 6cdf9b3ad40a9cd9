//! Cold start of every function beside a hello-world `lambda_runtime` function built with the same
//! profile (`make bench`): each binary is started as Lambda starts it, against a Lambda Runtime API
//! this program serves, with the environment the local deployment gave it (`.local/env/<fn>.env`,
//! so its init reaches the emulator as it would reach AWS).
//!
//! - init: from exec to the binary's first `GET /runtime/invocation/next` (what Lambda bills as Init
//!   Duration);
//! - first invoke: from handing it its sample event (`events-samples/<fn>/`) to its response;
//! - peak RSS: the process's high-water mark (`VmHWM`) once it has answered.
//!
//! Each is the median of `--runs` (default 7) fresh processes. Usage:
//! `coldstart <dir of cargo lambda's output> [--runs N]`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// What the runtime API saw of one process.
enum Seen {
    Next(Instant),
    Response(Instant),
}

/// Serves the Runtime API on `listener`: the first `next` gets `event`, a response is acknowledged.
fn serve(listener: TcpListener, event: Vec<u8>, seen: mpsc::Sender<Seen>) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (event, seen) = (event.clone(), seen.clone());
            std::thread::spawn(move || {
                let _ = connection(stream, &event, &seen);
            });
        }
    });
}

fn connection(stream: TcpStream, event: &[u8], seen: &mpsc::Sender<Seen>) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
        if path.ends_with("/invocation/next") {
            let _ = seen.send(Seen::Next(Instant::now()));
            let deadline = chrono::Utc::now().timestamp_millis() + 10_000;
            write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: cold-1\r\n\
                 lambda-runtime-deadline-ms: {deadline}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:eu-west-1:000000000000:function:bench\r\n\
                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\ncontent-length: {}\r\n\r\n",
                event.len()
            )?;
            out.write_all(event)?;
        } else {
            if path.contains("/response") || path.contains("/error") {
                let _ = seen.send(Seen::Response(Instant::now()));
            }
            out.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")?;
        }
        out.flush()?;
    }
}

/// One cold start of `binary` with `env`, handed `event`: (init, first invoke, peak RSS in KiB).
fn cold_start(binary: &Path, env: &BTreeMap<String, String>, event: &[u8]) -> Result<(Duration, Duration, u64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let api = listener.local_addr()?.to_string();
    let (tx, rx) = mpsc::channel();
    serve(listener, event.to_vec(), tx);
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| binary.display().to_string())?;
    let wait = |what: &str| {
        rx.recv_timeout(Duration::from_secs(20)).with_context(|| format!("{}: no {what}", binary.display()))
    };
    let result = (|| {
        let Seen::Next(ready) = wait("first next")? else { bail!("a response before any event") };
        let handed = Instant::now();
        let answered = loop {
            if let Seen::Response(at) = wait("response")? {
                break at;
            }
        };
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Ok((ready.duration_since(started), answered.duration_since(handed), hwm))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// The sample event a function's first invoke gets: the first of `events-samples/<dir>/`.
fn sample(root: &Path, function: &str) -> Result<Vec<u8>> {
    let dir = match function {
        "webhooks-fanout" | "webhooks-delivery" => "webhooks",
        "warehouse" => "warehouse",
        other => other,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("events-samples").join(dir))
        .with_context(|| format!("no samples for {function}"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.to_string_lossy().contains("invalid"))
        .collect();
    files.sort();
    let first = files.first().with_context(|| format!("no sample for {function}"))?;
    Ok(std::fs::read(first)?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).context("usage: coldstart <cargo lambda output dir> [--runs N]")?);
    let runs: usize = match args.iter().position(|a| a == "--runs") {
        Some(i) => args.get(i + 1).context("--runs N")?.parse()?,
        None => 7,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut functions: Vec<String> = std::fs::read_dir(&dir)?
        .flatten()
        .filter(|e| e.path().join("bootstrap").exists())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    functions.sort();
    functions.retain(|f| f != "hello");
    functions.insert(0, "hello".into());
    println!("\n== cold start: median of {runs} fresh processes, beside hello-world (same profile)");
    println!("{:<22} {:>9} {:>7} {:>13} {:>11}", "function", "init", "x hello", "first invoke", "peak RSS");
    let mut hello_init = f64::NAN;
    for function in functions {
        let binary = dir.join(&function).join("bootstrap");
        if !binary.exists() {
            println!("{function:<22} (not built)");
            continue;
        }
        let (env, event) = if function == "hello" {
            (BTreeMap::new(), b"{}".to_vec())
        } else {
            let env = env_file(&root.join(".local/env").join(format!("{function}.env")));
            match sample(&root, &function) {
                Ok(event) => (env, event),
                Err(e) => {
                    println!("{function:<22} skipped: {e}");
                    continue;
                }
            }
        };
        let mut inits = Vec::new();
        let mut invokes = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..runs {
            match cold_start(&binary, &env, &event) {
                Ok((init, invoke, hwm)) => {
                    inits.push(init.as_secs_f64() * 1000.0);
                    invokes.push(invoke.as_secs_f64() * 1000.0);
                    rss.push(hwm as f64 / 1024.0);
                }
                Err(e) => {
                    println!("{function:<22} failed: {e:#}");
                    break;
                }
            }
        }
        if inits.is_empty() {
            continue;
        }
        let init = median(inits);
        if function == "hello" {
            hello_init = init;
        }
        println!(
            "{function:<22} {init:>7.1}ms {:>6.1}x {:>11.1}ms {:>8.1} MB",
            init / hello_init,
            median(invokes),
            median(rss)
        );
    }
    Ok(())
}
