//! Writes `docs/attributes.md` from the attribute registry.

fn main() -> std::io::Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/attributes.md");
    std::fs::write(path, llmd_runtime::attributes::render_markdown())?;
    println!("wrote {path}");
    Ok(())
}
