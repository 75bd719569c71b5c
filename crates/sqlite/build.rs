// `sqlx::migrate!` embeds the migrations at compile time, but cargo cannot see a file
// added to a directory; this makes a new or changed migration of any owner (every crate
// with a `migrations/sqlite` directory) rebuild the crate.
fn main() {
    let crates = std::path::Path::new("..");
    for entry in std::fs::read_dir(crates).into_iter().flatten().flatten() {
        let migrations = entry.path().join("migrations").join("sqlite");
        if migrations.is_dir() {
            println!("cargo:rerun-if-changed={}", migrations.display());
        }
    }
}
