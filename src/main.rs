//! The `huddle` binary: load settings, start logging, build the node, run it.

use huddle::settings::Settings;
use huddle::startup::Application;

/// jemalloc rather than glibc's malloc. A handshake allocates and frees
/// buffers (HTTP, the MongoDB driver's) between the records a connection
/// keeps; glibc's arenas keep the holes, jemalloc's size classes do not:
/// idle connections 12.3 -> 9.2 KiB each on the embedded store, 24.3 ->
/// 8.0 KiB on MongoDB, and about 14 % less CPU per delivery in small rooms
/// (see the README's Performance section). Built with `background_thread`
/// on: a thread's arena that goes quiet after a burst (10,000 handshakes)
/// would otherwise keep its freed pages until that thread allocates again —
/// one node of a 2-node pair kept about 50 MB that way in three of five
/// runs. `_RJEM_MALLOC_CONF` still overrides it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Before anything opens a file: every connection is one.
    huddle::fdlimit::raise();
    let settings = Settings::load()?;
    let app = Application::build(settings).await?;
    app.run_until_stopped().await?;
    Ok(())
}
