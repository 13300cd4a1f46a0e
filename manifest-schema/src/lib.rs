//! The `engine.toml` manifest.
