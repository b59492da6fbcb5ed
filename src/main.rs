//! The `huddle` binary: load settings, start logging, build the node, run it.

use huddle::settings::Settings;
use huddle::startup::Application;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = Settings::load()?;
    let app = Application::build(settings).await?;
    app.run_until_stopped().await?;
    Ok(())
}
