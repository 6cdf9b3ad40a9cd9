//! Waiting for what happens elsewhere (a queue drained, an order shipped, a row written), the one
//! way: poll until it is so, for at most a bound, and say what was awaited when it never happened.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Polls `check` every 200 ms until it gives `Some`, for at most `within`; the error names `what`
/// was awaited. An error from `check` ends the wait at once.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
