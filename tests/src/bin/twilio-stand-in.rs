//! The Twilio stand-in (`orderflow_e2e::twilio`) as a process of its own, on 127.0.0.1:4590 (or
//! `ORDERFLOW_TWILIO_STAND_IN_PORT`) until it is killed: `make test` runs it for the whole run, so
//! every test process scripts and reads the one server the deployment texts.

use anyhow::{Context as _, Result};
use orderflow_e2e::twilio;

#[tokio::main]
async fn main() -> Result<()> {
    let port = twilio::port();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("the Twilio stand-in cannot listen on 127.0.0.1:{port}"))?;
    let _server = twilio::serve(listener).await;
    println!("the Twilio stand-in listens on 127.0.0.1:{port}");
    // Until a signal stops the process (tests/run.sh, at the end of the run).
    std::future::pending::<()>().await;
    Ok(())
}
