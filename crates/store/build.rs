// `sqlx::migrate!` embeds the migrations when the crate compiles, but cargo
// does not know a new file in the folder should make it compile again.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
