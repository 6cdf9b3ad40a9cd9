//! `orderflow-ops`: operator commands for a deployed Orderflow stack. See `orderflow_ops::cli` and
//! the README's "Operating" section.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The SDK's defaults, not the functions' 5 s per call (harness::aws): an operator's command may
    // list a whole stack and move thousands of messages, and nobody's deadline is at stake.
    // The SDK crates carry no HTTPS client of their own: the harness's (the workspace's Cargo.toml says why).
    let https = orderflow_harness::aws::https_client();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https).load().await;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // --help and --version are not errors: clap prints them and exits.
    if let Err(e) = <orderflow_ops::cli::Cli as clap::Parser>::try_parse_from(&args) {
        e.exit();
    }
    println!("{}", orderflow_ops::cli::run(args, &sdk).await?);
    Ok(())
}
