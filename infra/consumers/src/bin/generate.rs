//! `make generate`: writes the consumers' blocks of `infra/template.yaml` and the README's flow
//! diagram from the table (`infra/consumers/src/table.rs`).

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (path, text) in orderflow_consumers::render::generated(&root)? {
        let before = std::fs::read_to_string(&path)?;
        if before == text {
            println!("{}: up to date", path.display());
        } else {
            std::fs::write(&path, text)?;
            println!("{}: written", path.display());
        }
    }
    Ok(())
}
