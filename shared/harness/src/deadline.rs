//! The invocation's deadline, known to everything a record's handling calls.
//!
//! Lambda stops an invocation at its deadline wherever it is. The harness runs each record inside
//! [`within`] with the deadline from the Lambda context, so code deep in the call (the publisher's
//! resend loop) can ask [`remaining`] and stop retrying in time to report the failure, instead of
//! being cut off mid-sleep with the batch's outcome unreported.

use std::future::Future;
use std::time::{Duration, SystemTime};

tokio::task_local! {
    static DEADLINE: SystemTime;
}

/// Runs `f` with `deadline` as the current deadline.
pub async fn within<F: Future>(deadline: SystemTime, f: F) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// The current deadline, if the caller runs inside [`within`].
pub fn current() -> Option<SystemTime> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Time left before the current deadline (zero once past it); `None` outside [`within`].
pub fn remaining() -> Option<Duration> {
    current().map(|d| d.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Whether waiting `wait` and then working `work` still ends before the deadline (always true
/// outside [`within`]).
pub fn allows(wait: Duration, work: Duration) -> bool {
    remaining().is_none_or(|left| left > wait + work)
}
