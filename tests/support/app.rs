//! Starts the real huddle `Application` on port 0 with its own data
//! directory, as integration tests need it, and gives HTTP helpers.

use huddle::settings::Settings;
use huddle::startup::Application;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;

/// Secrets the tests sign their own tokens with.
pub const JWT_SECRET: &str = "integration-test-access-secret-0123456789";
pub const REFRESH_SECRET: &str = "integration-test-refresh-secret-0123456789";

/// A running node.
pub struct TestApp {
    pub port: u16,
    pub engine: huddle_actors::Engine,
    pub handle: actix_web::dev::ServerHandle,
    pub data_dir: tempfile::TempDir,
}

/// A registered user with an access token.
pub struct TestUser {
    pub id: String,
    pub token: String,
    /// Unique, lower-cased; used for @mentions.
    pub username: String,
}

/// Test settings with `extra` environment overrides.
pub fn settings(data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = [
        ("HUDDLE_ENV", "test"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("JWT_SECRET", JWT_SECRET),
        ("REFRESH_SECRET", REFRESH_SECRET),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.insert("DATA_DIR".into(), data_dir.display().to_string());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    Settings::load_from(&config, &env).expect("test settings load")
}

/// Starts a node; call inside `#[actix_web::test]`.
pub async fn spawn_app(extra: &[(&str, &str)]) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temporary data directory");
    spawn_app_in(data_dir, extra).await
}

/// Starts a node on an existing data directory (a restart). The previous
/// node's store may take a moment to close, so opening is retried for 10 s.
pub async fn spawn_app_in(data_dir: tempfile::TempDir, extra: &[(&str, &str)]) -> TestApp {
    // RUST_LOG=debug shows the node's log in failing tests.
    let _ = env_logger::builder().is_test(true).try_init();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let app = loop {
        let settings = settings(data_dir.path(), extra);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        match Application::build_with_listener(settings, listener).await {
            Ok(app) => break app,
            Err(e) if std::time::Instant::now() < deadline => {
                log::debug!("node not ready to open yet: {e:#}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("application builds: {e:#}"),
        }
    };
    let port = app.port();
    let engine = app.engine();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        port,
        engine,
        handle,
        data_dir,
    }
}

impl TestApp {
    /// Stops the node (as a restart would) and hands back its data directory.
    pub async fn stop(self) -> tempfile::TempDir {
        self.engine.close_all();
        self.handle.stop(false).await;
        drop(self.engine);
        self.data_dir
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// POSTs JSON, returns status and body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let client = awc::Client::default();
        let mut req = client.post(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let mut res = req.send_json(&body).await.expect("request sent");
        let status = res.status().as_u16();
        let body = res
            .json::<Value>()
            .limit(1 << 20)
            .await
            .unwrap_or(Value::Null);
        (status, body)
    }

    /// GETs JSON, returns status and body.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let client = awc::Client::default();
        let mut req = client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let mut res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        let body = res
            .json::<Value>()
            .limit(1 << 20)
            .await
            .unwrap_or(Value::Null);
        (status, body)
    }

    /// Sends `method` with an optional JSON body, returns status and body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let client = awc::Client::default();
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let mut res = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .expect("request sent");
        let status = res.status().as_u16();
        let body = res
            .json::<Value>()
            .limit(1 << 20)
            .await
            .unwrap_or(Value::Null);
        (status, body)
    }

    /// Posts a `multipart/form-data` `body` with `boundary`; returns status and
    /// JSON body.
    pub async fn post_form(
        &self,
        path: &str,
        token: &str,
        boundary: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut res = awc::Client::default()
            .post(self.url(path))
            .bearer_auth(token)
            .insert_header((
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            ))
            .send_body(body)
            .await
            .expect("request sent");
        let status = res.status().as_u16();
        (status, res.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// Registers a user named `name`.
    pub async fn register(&self, name: &str) -> TestUser {
        let email = format!(
            "{}-{}@example.test",
            name.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let (status, body) = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({ "email": email, "password": "correct horse", "name": name }),
            )
            .await;
        assert_eq!(status, 201, "register: {body}");
        TestUser {
            id: body["user"]["id"].as_str().expect("user id").to_owned(),
            token: body["accessToken"].as_str().expect("token").to_owned(),
            username: body["user"]["username"]
                .as_str()
                .expect("username")
                .to_owned(),
        }
    }

    /// Creates a conversation of `owner` with `others`; returns its id.
    pub async fn conversation(&self, owner: &TestUser, others: &[&TestUser]) -> String {
        let ids: Vec<&str> = others.iter().map(|u| u.id.as_str()).collect();
        let (status, body) = self
            .post(
                "/api/v1/conversations",
                Some(&owner.token),
                json!({ "memberIds": ids, "title": "test" }),
            )
            .await;
        assert_eq!(status, 201, "create conversation: {body}");
        body["id"].as_str().expect("conversation id").to_owned()
    }
}

/// Settings overrides that point a node at the test Redis under `prefix`
/// (nodes given the same prefix form one cluster), or `None` when there is
/// no test Redis (see `huddle::cluster::testing`).
pub fn redis_env(prefix: &str) -> Option<Vec<(String, String)>> {
    let url = huddle::cluster::testing::url()?;
    Some(vec![
        ("REDIS_URL".to_owned(), url),
        ("HUDDLE__REDIS__KEY_PREFIX".to_owned(), prefix.to_owned()),
    ])
}

/// Starts a node on the test Redis under `prefix` with `extra` overrides, or
/// `None` when there is no test Redis. Give several nodes one prefix (from
/// `huddle::cluster::testing::unique_prefix`) to make a cluster.
pub async fn spawn_app_on_redis(prefix: &str, extra: &[(&str, &str)]) -> Option<TestApp> {
    let env = redis_env(prefix)?;
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.extend_from_slice(extra);
    Some(spawn_app(&all).await)
}
