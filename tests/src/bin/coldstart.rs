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
//! Each is the median of `--runs` (default 7) fresh processes.
//!
//! With `--tls <dir>`, each function is measured again with the emulator behind a local TLS
//! endpoint this program serves (rustls; `<dir>` holds its `server.pem` and `server.key`, and
//! `roots.pem`, the system's trusted roots with the CA that signed the certificate, which the
//! functions trust through `SSL_CERT_FILE`, which also has them read the system's roots instead of
//! Amazon's five, `harness::aws::roots`): as AWS is reached, each first request to a service pays a
//! TLS handshake. And with `OPEN_CONNECTIONS_AT_INIT=true`, which opens those connections during
//! init (`harness::aws::connections`): what it moves from the first invoke into init, and what it
//! adds. The three are taken in turn, one process of each, so that what else the machine does falls
//! on all three alike.
//!
//! Usage: `coldstart <dir of cargo lambda's output> [--runs N] [--tls <dir>]`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
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

/// A local TLS endpoint in front of `upstream` (`host:port`): each connection's TLS is ended here and
/// its bytes passed on. Returns its port.
fn tls_endpoint(dir: &Path, upstream: String) -> Result<u16> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .context("server.pem")?
        .collect::<Result<Vec<_>, _>>()
        .context("server.pem")?;
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).context("server.key")?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut emulator) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    let _ = emulator.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut emulator).await;
                });
            }
        });
    });
    Ok(port)
}

/// Median init, first invoke and peak RSS (ms, ms, MB).
type Figures = (f64, f64, f64);

/// [`Figures`] of `runs` cold starts with each of `envs`,
/// taken in turn (one of each, then again), so that whatever else the machine does falls on all of
/// them alike.
fn measure(binary: &Path, envs: &[BTreeMap<String, String>], event: &[u8], runs: usize) -> Result<Vec<Figures>> {
    let mut taken = vec![(Vec::new(), Vec::new(), Vec::new()); envs.len()];
    for _ in 0..runs {
        for (env, (inits, invokes, rss)) in envs.iter().zip(taken.iter_mut()) {
            let (init, invoke, hwm) = cold_start(binary, env, event)?;
            inits.push(init.as_secs_f64() * 1000.0);
            invokes.push(invoke.as_secs_f64() * 1000.0);
            rss.push(hwm as f64 / 1024.0);
        }
    }
    Ok(taken.into_iter().map(|(inits, invokes, rss)| (median(inits), median(invokes), median(rss))).collect())
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
    let dir =
        PathBuf::from(args.get(1).context("usage: coldstart <cargo lambda output dir> [--runs N] [--tls <dir>]")?);
    let option = |name: &str| {
        args.iter().position(|a| a == name).map(|i| args.get(i + 1).with_context(|| format!("{name} needs a value")))
    };
    let runs: usize = match option("--runs") {
        Some(n) => n?.parse()?,
        None => 7,
    };
    let tls_dir = option("--tls").transpose()?.map(PathBuf::from);
    // The emulator behind a local TLS endpoint, for the functions that call AWS.
    let tls = match &tls_dir {
        Some(dir) => {
            let emulator = std::env::var("AWS_ENDPOINT_URL").context("--tls needs AWS_ENDPOINT_URL (the emulator)")?;
            let upstream = emulator.split("://").nth(1).unwrap_or(&emulator).trim_end_matches('/').to_string();
            Some((tls_endpoint(dir, upstream)?, dir.join("roots.pem").display().to_string()))
        }
        None => None,
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
    // Each function's figures over TLS, then with its connections opened at init.
    let mut over_tls: Vec<(String, [Figures; 3])> = Vec::new();
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
        let mut envs = vec![env.clone()];
        if let (Some((port, roots)), true) = (&tls, env.contains_key("AWS_ENDPOINT_URL")) {
            let mut tls = env.clone();
            tls.insert("AWS_ENDPOINT_URL".into(), format!("https://127.0.0.1:{port}"));
            tls.insert("SSL_CERT_FILE".into(), roots.clone());
            tls.insert("OPEN_CONNECTIONS_AT_INIT".into(), "false".into());
            let mut opened = tls.clone();
            opened.insert("OPEN_CONNECTIONS_AT_INIT".into(), "true".into());
            envs.extend([tls, opened]);
        }
        let figures = match measure(&binary, &envs, &event, runs) {
            Ok(figures) => figures,
            Err(e) => {
                println!("{function:<22} failed: {e:#}");
                continue;
            }
        };
        let (init, invoke, rss) = figures[0];
        if function == "hello" {
            hello_init = init;
        }
        println!("{function:<22} {init:>7.1}ms {:>6.1}x {invoke:>11.1}ms {rss:>8.1} MB", init / hello_init);
        if let [plain, tls, opened] = figures[..] {
            over_tls.push((function, [plain, tls, opened]));
        }
    }

    let Some((port, _)) = tls else { return Ok(()) };
    println!(
        "\n== the same over TLS: the emulator behind a local TLS endpoint (https://127.0.0.1:{port}), \
         then with OPEN_CONNECTIONS_AT_INIT=true; the three taken in turn, median of {runs}"
    );
    println!(
        "{:<22} {:>15} {:>15} {:>16} {:>11} {:>11}",
        "function", "plain init+1st", "TLS init+1st", "opened at init", "1st saved", "init added"
    );
    for (function, [(init, invoke, _), (tls_init, tls_invoke, _), (open_init, open_invoke, _)]) in over_tls {
        println!(
            "{function:<22} {:>15} {:>15} {:>16} {:>9.1}ms {:>9.1}ms",
            format!("{init:.1}+{invoke:.1}ms"),
            format!("{tls_init:.1}+{tls_invoke:.1}ms"),
            format!("{open_init:.1}+{open_invoke:.1}ms"),
            tls_invoke - open_invoke,
            open_init - tls_init
        );
    }
    Ok(())
}
