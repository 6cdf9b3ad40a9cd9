//! The end-to-end tests and the template checks: one test binary, a module for each file beside
//! this one. A binary a file, as cargo makes them by default, compiled the SDK calls each file
//! makes and linked about 70 MB for each of ten binaries, in every cold `make test` and every time
//! this crate's library changed (README, "Build and test time").
//!
//! The tests are named by module (`outage::…`, `sms::…`): `make test` runs them with cargo nextest,
//! a process for each test, and picks the ones that run alone by that name (`.config/nextest.toml`,
//! `tests/run.sh`). By hand, against a stack `make demo` deployed, run them the same way, the
//! outage tests after the rest and one at a time, the privacy read last:
//!
//! ```text
//! cargo nextest run -p orderflow-e2e --run-ignored all -E 'not test(/^(outage|privacy|localstack)::/)'
//! cargo nextest run -p orderflow-e2e --run-ignored all --test-threads 1 -E 'test(/^outage::/)'
//! cargo nextest run -p orderflow-e2e --run-ignored all -E 'test(/^privacy::/)'
//! ```
//!
//! (`localstack::` needs LocalStack on the host: `infra/localstack.sh up`, then
//! `ORDERFLOW_LOCALSTACK_URL=$(infra/localstack.sh endpoint)`.) Under one `cargo test -- --ignored`
//! every module would run at once in one process, the outage tests beside the tests whose
//! consumers they take down.

mod aws_api;
mod compensation;
mod e2e;
mod email;
mod localstack;
mod outage;
mod privacy;
mod read_models;
mod security;
mod sms;
mod template;
mod webhooks;
