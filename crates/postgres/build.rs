//! Writes the list of every owner's `migrations/postgres` that `MIGRATOR` composes; see
//! `crates/db/build/owners.rs`.

include!("../db/build/owners.rs");

fn main() {
    write_owners("postgres");
}
