//! Embeds `migrations/` (listed by `embedded_migrations::write`, which also tells cargo
//! to rebuild when a migration is added or edited).
fn main() {
    embedded_migrations::write("migrations");
}
