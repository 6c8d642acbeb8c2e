//! The web page is embedded from `web/dist`, built by `scripts/build-web`. A checkout where it
//! was not built yet still compiles: the folder is created empty and the server answers the
//! page's paths with a note saying how to build it.
fn main() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist");
    if !dist.exists() {
        std::fs::create_dir_all(&dist).expect("creating web/dist");
    }
    println!("cargo::rerun-if-changed=../../web/dist");
}
