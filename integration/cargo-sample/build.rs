//! Builds (or, locked, fetches) the engines of models/engine.toml into OUT_DIR and names each
//! in `TRTFARM_ENGINE_<NAME>`.

fn main() -> Result<(), trtfarm_build::Error> {
    trtfarm_build::Engines::from_manifest("models/engine.toml")?.fetch()?;
    Ok(())
}
