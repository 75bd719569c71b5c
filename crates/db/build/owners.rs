// Included by the build scripts of the engine adapters (`oxcart-sqlite`,
// `oxcart-postgres`): one function, so both find their owners the same way.

/// Finds every owner of tables (a crate with a `migrations/<engine>` directory beside the
/// adapter) and writes the list the adapter composes its schema from, `owners.rs` in
/// `OUT_DIR`: one `sqlx::migrate!` each. A service that adds tables needs no line in the
/// adapter; and since `sqlx::migrate!` embeds the files at compile time but cargo cannot
/// see a file added to a directory, each directory is watched, so a new or changed
/// migration rebuilds the adapter.
fn write_owners(engine: &str) {
    use std::fmt::Write as _;

    let mut owners: Vec<String> = std::fs::read_dir("..")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().join("migrations").join(engine).is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    owners.sort();
    let mut list = String::from("[\n");
    for owner in &owners {
        let dir = format!("../{owner}/migrations/{engine}");
        println!("cargo:rerun-if-changed={dir}");
        let _ = writeln!(list, "    sqlx::migrate!(\"{dir}\"),");
    }
    list.push(']');
    // A new crate changes the lock file (watching `..` would rerun this on any edit in
    // any crate). A crate that gains its first migrations later is caught by
    // `crates/sql/tests/schema.rs`, which compares the migrator with the files.
    println!("cargo:rerun-if-changed=../../Cargo.lock");
    println!("cargo:rerun-if-changed=../db/build/owners.rs");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(std::path::Path::new(&out).join("owners.rs"), list)
        .expect("OUT_DIR is writable");
}
