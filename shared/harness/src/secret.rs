//! A secret that rotates: read from Secrets Manager at init, kept for a bounded age, and read again
//! at once when the service it opens says the value is no longer valid.
//!
//! ```text
//! current() ─► younger than max_age? ─► the cached value
//!                 └─ older: read again (a failed read keeps the old value, with a warning, and
//!                    the next try waits FAILED_READ_BACKOFF)
//! refresh_after_rejection(seen) ─► someone refreshed since `seen`? ─► that value
//!                 ├─ read less than min_interval ago? ─► None (nothing new to try)
//!                 └─ read again ─► changed? Some(new) : None
//! ```
//!
//! An adapter calls `current()` for every use and, on an authentication failure, asks
//! `refresh_after_rejection` once and retries only when it gets a new value: a value that is simply
//! wrong stays a permanent failure, and a rotation costs no dead letter. Concurrent records share one
//! read (single flight), and a stream of bad requests reads the secret at most once per
//! `min_interval`.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tracing::{info, warn};

use crate::clock::{Clock, SystemClock};

/// How long a warm instance keeps a secret before reading it again, unless told otherwise
/// (`SECRET_MAX_AGE_SECONDS`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// The shortest time between two reads forced by rejections.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// After a read that failed, how long the old value is used before the next try (so a Secrets
/// Manager outage costs one slow call per this period, not one per record).
pub const FAILED_READ_BACKOFF: Duration = Duration::from_secs(30);

/// Where a secret's value is read from.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The current value; the error names the secret, never its value.
    async fn fetch(&self) -> Result<String, String>;
}

#[cfg(feature = "aws")]
/// Secrets Manager: the secret's current (`AWSCURRENT`) string.
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

#[cfg(feature = "aws")]
impl SecretsManagerSource {
    /// The secret `secret_id` (name or ARN).
    pub fn new(sdk: &aws_config::SdkConfig, secret_id: impl Into<String>) -> Self {
        Self { client: aws_sdk_secretsmanager::Client::new(sdk), secret_id: secret_id.into() }
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn fetch(&self) -> Result<String, String> {
        let out = self.client.get_secret_value().secret_id(&self.secret_id).send().await.map_err(|e| {
            format!("reading the secret {}: {}", self.secret_id, aws_sdk_secretsmanager::error::DisplayErrorContext(e))
        })?;
        out.secret_string().map(str::to_string).ok_or_else(|| format!("the secret {} holds no string", self.secret_id))
    }
}

/// A value that never changes (tests, and callers given a value rather than a secret).
pub struct FixedSecret(pub String);

#[async_trait]
impl SecretSource for FixedSecret {
    async fn fetch(&self) -> Result<String, String> {
        Ok(self.0.clone())
    }
}

/// A secret's parsed value and the generation it belongs to (one more on every change).
pub struct Current<T> {
    /// The parsed value.
    pub value: Arc<T>,
    /// Its generation: pass it back to [`RotatingSecret::refresh_after_rejection`].
    pub generation: u64,
}

impl<T> Clone for Current<T> {
    fn clone(&self) -> Self {
        Self { value: Arc::clone(&self.value), generation: self.generation }
    }
}

struct State<T> {
    raw: String,
    current: Current<T>,
    fetched_at: SystemTime,
    forced_at: Option<SystemTime>,
}

type Parser<T> = Box<dyn Fn(&str) -> Result<T, String> + Send + Sync>;

/// A secret, parsed as `T`, kept for at most `max_age`.
pub struct RotatingSecret<T> {
    name: String,
    source: Box<dyn SecretSource>,
    parse: Parser<T>,
    max_age: Duration,
    min_interval: Duration,
    clock: Arc<dyn Clock>,
    state: RwLock<State<T>>,
    reading: tokio::sync::Mutex<()>,
}

impl<T> fmt::Debug for RotatingSecret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingSecret").field("name", &self.name).field("max_age", &self.max_age).finish()
    }
}

impl<T: Send + Sync + 'static> RotatingSecret<T> {
    /// Reads `source` once (at init: an unreadable or unparsable secret fails the init) and keeps the
    /// value for `max_age`. `name` appears in logs and errors, the value never does.
    pub async fn load(
        name: impl Into<String>,
        source: Box<dyn SecretSource>,
        parse: impl Fn(&str) -> Result<T, String> + Send + Sync + 'static,
        max_age: Duration,
    ) -> Result<Self, String> {
        Self::load_with_clock(name, source, parse, max_age, Arc::new(SystemClock)).await
    }

    /// [`RotatingSecret::load`] on `clock` (tests move a `ManualClock`).
    pub async fn load_with_clock(
        name: impl Into<String>,
        source: Box<dyn SecretSource>,
        parse: impl Fn(&str) -> Result<T, String> + Send + Sync + 'static,
        max_age: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let name = name.into();
        let raw = source.fetch().await?;
        let value = parse(&raw).map_err(|e| format!("the secret {name}: {e}"))?;
        let state = State {
            raw,
            current: Current { value: Arc::new(value), generation: 0 },
            fetched_at: clock.now(),
            forced_at: None,
        };
        Ok(Self {
            name,
            source,
            parse: Box::new(parse),
            max_age,
            min_interval: DEFAULT_MIN_INTERVAL,
            clock,
            state: RwLock::new(state),
            reading: tokio::sync::Mutex::new(()),
        })
    }

    /// A secret that never changes: `value` as given.
    pub fn fixed(name: impl Into<String>, value: T) -> Self {
        Self {
            name: name.into(),
            source: Box::new(FixedSecret(String::new())),
            parse: Box::new(|_| Err("a fixed secret is never read again".into())),
            max_age: Duration::MAX,
            min_interval: Duration::MAX,
            clock: Arc::new(SystemClock),
            state: RwLock::new(State {
                raw: String::new(),
                current: Current { value: Arc::new(value), generation: 0 },
                fetched_at: SystemTime::now(),
                forced_at: Some(SystemTime::now()),
            }),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The shortest time between two reads forced by rejections (default 1 s).
    pub fn with_min_interval(mut self, min_interval: Duration) -> Self {
        self.min_interval = min_interval;
        self
    }

    fn snapshot(&self) -> (Current<T>, SystemTime) {
        let state = self.state.read().expect("lock");
        (state.current.clone(), state.fetched_at)
    }

    fn age(&self, since: SystemTime) -> Duration {
        self.clock.now().duration_since(since).unwrap_or(Duration::ZERO)
    }

    /// The value, read again first when it is older than `max_age`. A failed read keeps the old
    /// value (it may still be valid), and the next read is tried [`FAILED_READ_BACKOFF`] later.
    pub async fn current(&self) -> Current<T> {
        let (current, fetched_at) = self.snapshot();
        if self.age(fetched_at) < self.max_age {
            return current;
        }
        let _reading = self.reading.lock().await;
        let (current, fetched_at) = self.snapshot();
        if self.age(fetched_at) < self.max_age {
            return current;
        }
        match self.read_again().await {
            Ok(current) => current,
            Err(e) => {
                warn!(secret = %self.name, error = %e, "could not read the secret again: keeping the value it had");
                // Counted as read `FAILED_READ_BACKOFF` short of `max_age` ago: tried again after that.
                let retry_at = self.clock.now() + FAILED_READ_BACKOFF.min(self.max_age);
                self.state.write().expect("lock").fetched_at =
                    retry_at.checked_sub(self.max_age).unwrap_or(SystemTime::UNIX_EPOCH);
                current
            }
        }
    }

    /// After the value of generation `seen` was refused: a newer value to try, or `None` when the
    /// secret has not changed (the refusal stands). Reads the secret at most once per
    /// `min_interval`, and once for any number of concurrent callers.
    pub async fn refresh_after_rejection(&self, seen: u64) -> Result<Option<Current<T>>, String> {
        let _reading = self.reading.lock().await;
        {
            let state = self.state.read().expect("lock");
            if state.current.generation != seen {
                return Ok(Some(state.current.clone()));
            }
            if state.forced_at.is_some_and(|at| self.age(at) < self.min_interval) {
                return Ok(None);
            }
        }
        self.state.write().expect("lock").forced_at = Some(self.clock.now());
        let current = self.read_again().await?;
        Ok((current.generation != seen).then_some(current))
    }

    /// Reads the source; a changed value becomes the next generation. Holds `reading`.
    async fn read_again(&self) -> Result<Current<T>, String> {
        let raw = self.source.fetch().await?;
        let mut state = self.state.write().expect("lock");
        state.fetched_at = self.clock.now();
        if raw != state.raw {
            let value = (self.parse)(&raw).map_err(|e| format!("the secret {}: {e}", self.name))?;
            state.current = Current { value: Arc::new(value), generation: state.current.generation + 1 };
            state.raw = raw;
            info!(secret = %self.name, generation = state.current.generation, "the secret has a new value");
        }
        Ok(state.current.clone())
    }
}

/// The in-memory fake of a secret store: a value that can be rotated, and a count of reads.
#[derive(Debug, Default)]
pub struct InMemorySecret {
    value: std::sync::Mutex<String>,
    reads: std::sync::atomic::AtomicUsize,
    failing: std::sync::atomic::AtomicBool,
}

impl InMemorySecret {
    /// Holding `value`.
    pub fn new(value: impl Into<String>) -> Arc<Self> {
        Arc::new(Self { value: std::sync::Mutex::new(value.into()), ..Default::default() })
    }

    /// Makes every later read fail (the service is unreachable) while `failing`.
    pub fn fail_reads(&self, failing: bool) {
        self.failing.store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Rotates it to `value`.
    pub fn set(&self, value: impl Into<String>) {
        *self.value.lock().expect("lock") = value.into();
    }

    /// How many times it was read.
    pub fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl SecretSource for Arc<InMemorySecret> {
    async fn fetch(&self) -> Result<String, String> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("reading the secret: service unavailable (fake)".into());
        }
        Ok(self.value.lock().expect("lock").clone())
    }
}
