// `sqlx::migrate!` embeds the migrations at compile time, but cargo cannot see a file
// added to the directory; this makes a new or changed migration rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
