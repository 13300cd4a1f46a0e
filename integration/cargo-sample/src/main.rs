//! Prints where the engine is, its size and its blake3: the engine is compiled in
//! (`include_bytes!`) and also named by path (for a loader that reads it at run time).

/// The plan, compiled into the binary.
static ENGINE: &[u8] = include_bytes!(env!("TRTFARM_ENGINE_FP32"));

fn main() {
    let path = env!("TRTFARM_ENGINE_FP32");
    let on_disk = std::fs::read(path).map(|bytes| blake3::hash(&bytes).to_hex().to_string());
    println!("path: {path}");
    println!("size: {}", ENGINE.len());
    println!("blake3: {}", blake3::hash(ENGINE).to_hex());
    match on_disk {
        Ok(hex) => println!("file blake3: {hex}"),
        Err(error) => println!("file blake3: unreadable ({error})"),
    }
}
