//! Integration tests of the HTTP API (`huddle::http::configure`): accounts,
//! tokens, conversations, history, error shapes, rate limits and operations
//! endpoints, through actix's test service and a real (in-memory) store.

mod support;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use huddle::settings::Settings;
use huddle::state::AppState;
use huddle_actors::auth::AuthFailure;
use huddle_actors::ids::{ConversationId, UserId};
use huddle_actors::model::{MessageBody as Body, NewMessage};
use huddle_actors::store::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use support::faulty_store::FaultyStore;

const JWT_SECRET: &str = "integration-test-access-secret-0123456789";
const REFRESH_SECRET: &str = "integration-test-refresh-secret-0123456789";

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn settings_with(extra: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = [
        ("HUDDLE_ENV", "test"),
        ("JWT_SECRET", JWT_SECRET),
        ("REFRESH_SECRET", REFRESH_SECRET),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Settings::load_from(&config_dir(), &env).expect("test settings load")
}

struct Ctx {
    store: Arc<FaultyStore>,
    state: AppState,
}

fn ctx_with(extra: &[(&str, &str)]) -> Ctx {
    let store = Arc::new(FaultyStore::new());
    let state = AppState::new(settings_with(extra), store.clone(), store.blobs.clone());
    Ctx { store, state }
}

fn ctx() -> Ctx {
    ctx_with(&[])
}

async fn app(
    ctx: &Ctx,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
> {
    test::init_service(
        App::new()
            .app_data(web::Data::new(ctx.state.clone()))
            .configure(huddle::http::configure),
    )
    .await
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn send<S, B>(app: &S, req: test::TestRequest) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = test::read_body(resp).await;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("non-JSON body ({e}): {:?}", String::from_utf8_lossy(&bytes))
        })
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn post(path: &str, body: Value) -> test::TestRequest {
    test::TestRequest::post().uri(path).set_json(body)
}

fn get(path: &str, token: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri(path)
        .insert_header((AUTHORIZATION, format!("Bearer {token}")))
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "body: {}", reply.body);
    assert_eq!(reply.body["error"]["code"], code, "body: {}", reply.body);
    assert!(
        reply.body["error"]["message"].is_string(),
        "body: {}",
        reply.body
    );
}

/// Registers an account and returns `(user, accessToken, refreshToken)`.
async fn register<S, B>(app: &S, email: &str, name: &str) -> (Value, String, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let reply = send(
        app,
        post(
            "/api/v1/auth/register",
            json!({ "email": email, "password": "correct horse battery", "name": name }),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    (
        reply.body["user"].clone(),
        reply.body["accessToken"].as_str().unwrap().to_owned(),
        reply.body["refreshToken"].as_str().unwrap().to_owned(),
    )
}

fn external_token(sub: &str, name: Option<&str>, exp_offset_secs: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({ "sub": sub, "exp": now + exp_offset_secs, "iat": now });
    if let Some(name) = name {
        claims["name"] = json!(name);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

// ---------------------------------------------------------------- accounts

#[actix_web::test]
async fn register_login_me_and_refresh_rotation() {
    let ctx = ctx();
    let app = app(&ctx).await;

    let reply = send(
        &app,
        post(
            "/api/v1/auth/register",
            json!({ "email": "  Ann.Lee@Example.COM ", "password": "correct horse battery", "name": " Ann Lee " }),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let user = &reply.body["user"];
    assert_eq!(user["email"], "ann.lee@example.com");
    assert_eq!(user["name"], "Ann Lee");
    assert_eq!(user["username"], "ann.lee");
    assert!(user["id"].is_string());
    assert!(user.get("passwordHash").is_none(), "hash must not leak");
    let access = reply.body["accessToken"].as_str().unwrap().to_owned();
    let refresh = reply.body["refreshToken"].as_str().unwrap().to_owned();

    // The stored hash is argon2id.
    let stored = ctx
        .store
        .user_by_email("ann.lee@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.password_hash.unwrap().starts_with("$argon2id$"));

    let me = send(&app, get("/api/v1/auth/me", &access)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body, *user);

    let login = send(
        &app,
        post(
            "/api/v1/auth/login",
            json!({ "email": "ANN.LEE@example.com", "password": "correct horse battery" }),
        ),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_eq!(login.body["user"], *user);
    assert!(login.body["accessToken"].is_string());

    // Rotation: the refresh token works once and yields a new one.
    let first = send(
        &app,
        post("/api/v1/auth/refresh", json!({ "refreshToken": refresh })),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["user"], *user);
    let rotated = first.body["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(rotated, refresh);
    let new_access = first.body["accessToken"].as_str().unwrap();
    assert_eq!(
        send(&app, get("/api/v1/auth/me", new_access)).await.status,
        StatusCode::OK
    );

    let reused = send(
        &app,
        post("/api/v1/auth/refresh", json!({ "refreshToken": refresh })),
    )
    .await;
    assert_error(&reused, 401, "unauthorized");

    let second = send(
        &app,
        post("/api/v1/auth/refresh", json!({ "refreshToken": rotated })),
    )
    .await;
    assert_eq!(second.status, StatusCode::OK);

    // An access token is not a refresh token, and vice versa.
    let wrong_kind = send(
        &app,
        post("/api/v1/auth/refresh", json!({ "refreshToken": access })),
    )
    .await;
    assert_error(&wrong_kind, 401, "unauthorized");
    let refresh_as_access = send(
        &app,
        get(
            "/api/v1/auth/me",
            second.body["refreshToken"].as_str().unwrap(),
        ),
    )
    .await;
    assert_error(&refresh_as_access, 401, "unauthorized");
}

#[actix_web::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let ctx = ctx();
    let app = app(&ctx).await;
    register(&app, "bob@example.com", "Bob").await;
    let wrong = send(
        &app,
        post(
            "/api/v1/auth/login",
            json!({ "email": "bob@example.com", "password": "not the password" }),
        ),
    )
    .await;
    let unknown = send(
        &app,
        post(
            "/api/v1/auth/login",
            json!({ "email": "nobody@example.com", "password": "not the password" }),
        ),
    )
    .await;
    assert_error(&wrong, 401, "unauthorized");
    assert_eq!(wrong.body, unknown.body);
}

#[actix_web::test]
async fn duplicate_email_is_a_conflict_whatever_its_case() {
    let ctx = ctx();
    let app = app(&ctx).await;
    register(&app, "carol@example.com", "Carol").await;
    let dup = send(
        &app,
        post(
            "/api/v1/auth/register",
            json!({ "email": "CAROL@Example.com", "password": "another password", "name": "Carol 2" }),
        ),
    )
    .await;
    assert_error(&dup, 409, "conflict");
}

#[actix_web::test]
async fn usernames_are_derived_unique_or_taken_from_the_request() {
    let ctx = ctx();
    let app = app(&ctx).await;
    let (a, _, _) = register(&app, "dave@one.example", "Dave One").await;
    let (b, _, _) = register(&app, "Dave@two.example", "Dave Two").await;
    assert_eq!(a["username"], "dave");
    assert_eq!(b["username"], "dave-2");

    let chosen = send(
        &app,
        post(
            "/api/v1/auth/register",
            json!({ "email": "d3@example.com", "password": "password123", "name": "D3", "username": "Dave_The_Third" }),
        ),
    )
    .await;
    assert_eq!(chosen.status, StatusCode::CREATED);
    assert_eq!(chosen.body["user"]["username"], "dave_the_third");

    let taken = send(
        &app,
        post(
            "/api/v1/auth/register",
            json!({ "email": "d4@example.com", "password": "password123", "name": "D4", "username": "DAVE" }),
        ),
    )
    .await;
    assert_error(&taken, 409, "conflict");

    let invalid = send(
        &app,
        post(
            "/api/v1/auth/register",
            json!({ "email": "d5@example.com", "password": "password123", "name": "D5", "username": "dave five!" }),
        ),
    )
    .await;
    assert_error(&invalid, 400, "bad_request");
}

#[actix_web::test]
async fn invalid_registrations_are_bad_requests() {
    let ctx = ctx();
    let app = app(&ctx).await;
    let huge = "x".repeat(20_000);
    let cases = [
        json!({ "email": "e@example.com", "password": "short", "name": "E" }),
        json!({ "email": "not-an-email", "password": "password123", "name": "E" }),
        json!({ "email": "e@example.com", "password": "password123", "name": "   " }),
        json!({ "email": "e@example.com", "password": "password123" }),
        json!({ "email": 5, "password": "password123", "name": "E" }),
        json!({ "email": "e@example.com", "password": ["password123"], "name": "E" }),
        json!({ "email": format!("{huge}@example.com"), "password": "password123", "name": "E" }),
        json!({ "email": "e@example.com", "password": "password123", "name": huge }),
        json!({ "email": "e@example.com", "password": huge, "name": "E" }),
        json!({ "email": "e@example.com", "password": "password123", "name": "E", "username": [huge] }),
        json!({ "email": "e@example.com", "password": "password123", "name": { "x": huge } }),
        json!([1, 2, 3]),
    ];
    for case in cases {
        let reply = send(&app, post("/api/v1/auth/register", case.clone())).await;
        assert_error(&reply, 400, "bad_request");
        assert!(
            !reply.body.to_string().contains(&huge),
            "echoed a huge input back"
        );
    }
    let short = send(
        &app,
        post(
            "/api/v1/auth/register",
            json!({ "email": "e@example.com", "password": "1234567", "name": "E" }),
        ),
    )
    .await;
    assert!(short.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("8 characters"));
}

#[actix_web::test]
async fn malformed_bodies_answer_in_the_contract_shape() {
    let ctx = ctx();
    let app = app(&ctx).await;

    let bad_json = send(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/auth/login")
            .insert_header((CONTENT_TYPE, "application/json"))
            .set_payload("{\"email\": \"a@b.c\", "),
    )
    .await;
    assert_error(&bad_json, 400, "bad_request");

    let not_json = send(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/auth/login")
            .insert_header((CONTENT_TYPE, "text/plain"))
            .set_payload("hello"),
    )
    .await;
    assert_error(&not_json, 415, "unsupported_media_type");

    let too_big = send(
        &app,
        post(
            "/api/v1/auth/login",
            json!({ "email": "a@example.com", "password": "p".repeat(100_000) }),
        ),
    )
    .await;
    assert_error(&too_big, 413, "payload_too_large");
}

// ---------------------------------------------------------------- tokens

#[actix_web::test]
async fn missing_invalid_and_expired_tokens_are_refused() {
    let ctx = ctx();
    let app = app(&ctx).await;

    let missing = send(&app, test::TestRequest::get().uri("/api/v1/auth/me")).await;
    assert_error(&missing, 401, "unauthorized");

    let garbage = send(&app, get("/api/v1/auth/me", "not.a.token")).await;
    assert_error(&garbage, 401, "unauthorized");

    let basic = send(
        &app,
        test::TestRequest::get()
            .uri("/api/v1/conversations")
            .insert_header((AUTHORIZATION, "Basic dXNlcjpwYXNz")),
    )
    .await;
    assert_error(&basic, 401, "unauthorized");

    let expired = external_token("u-expired", Some("Old"), -5);
    let reply = send(&app, get("/api/v1/conversations", &expired)).await;
    assert_error(&reply, 401, "token_expired");
    assert_eq!(
        ctx.state.authenticator().authenticate(&expired).await,
        Err(AuthFailure::Expired)
    );

    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": "u1", "exp": chrono::Utc::now().timestamp() + 60 }),
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-of-enough-length!!"),
    )
    .unwrap();
    let reply = send(&app, get("/api/v1/auth/me", &forged)).await;
    assert_error(&reply, 401, "unauthorized");
}

#[actix_web::test]
async fn tokens_from_another_service_create_the_user() {
    let ctx = ctx();
    let app = app(&ctx).await;
    let token = external_token("ext-42", Some("Erin External"), 300);

    let me = send(&app, get("/api/v1/auth/me", &token)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["id"], "ext-42");
    assert_eq!(me.body["name"], "Erin External");
    assert_eq!(me.body["email"], Value::Null);
    assert_eq!(me.body["username"], "erin.external");

    // The socket handshake port sees the same identity.
    let identity = ctx
        .state
        .authenticator()
        .authenticate(&token)
        .await
        .unwrap();
    assert_eq!(identity.user_id, UserId::from("ext-42"));
    assert_eq!(identity.name, "Erin External");

    // A store outage is "unavailable" to the handshake, 500 to HTTP.
    let other = external_token("ext-43", None, 300);
    ctx.store.set_down(true);
    assert_eq!(
        ctx.state.authenticator().authenticate(&other).await,
        Err(AuthFailure::Unavailable)
    );
    let reply = send(&app, get("/api/v1/auth/me", &other)).await;
    assert_error(&reply, 500, "internal");
    assert_eq!(reply.body["error"]["message"], "internal server error");
}

// ---------------------------------------------------------------- conversations

#[actix_web::test]
async fn conversations_are_created_deduplicated_and_listed() {
    let ctx = ctx();
    let app = app(&ctx).await;
    let (ann, ann_token, _) = register(&app, "ann@example.com", "Ann").await;
    let (bob, bob_token, _) = register(&app, "bob@example.com", "Bob").await;
    let (cy, _, _) = register(&app, "cy@example.com", "Cy").await;
    let ann_id = ann["id"].as_str().unwrap();
    let bob_id = bob["id"].as_str().unwrap();
    let cy_id = cy["id"].as_str().unwrap();

    let create = |token: &str, body: Value| {
        test::TestRequest::post()
            .uri("/api/v1/conversations")
            .insert_header((AUTHORIZATION, format!("Bearer {token}")))
            .set_json(body)
    };

    let direct = send(&app, create(&ann_token, json!({ "memberIds": [bob_id] }))).await;
    assert_eq!(direct.status, StatusCode::CREATED, "{}", direct.body);
    let direct_id = direct.body["id"].as_str().unwrap().to_owned();
    assert_eq!(direct.body["createdBy"], ann_id);
    assert_eq!(direct.body["lastSeq"], 0);
    let members: Vec<&str> = direct.body["memberIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(members, vec![ann_id, bob_id], "creator first, then members");
    assert!(direct.body["createdAt"].as_str().unwrap().ends_with('Z'));

    // The same pair, from either side, gets the same conversation with 200.
    let again = send(
        &app,
        create(&bob_token, json!({ "memberIds": [ann_id, bob_id] })),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], direct_id.as_str());

    // A title makes a separate conversation; so does a third member.
    let titled = send(
        &app,
        create(
            &ann_token,
            json!({ "memberIds": [bob_id], "title": "Plans" }),
        ),
    )
    .await;
    assert_eq!(titled.status, StatusCode::CREATED);
    assert_ne!(titled.body["id"], direct_id.as_str());
    let group = send(
        &app,
        create(
            &ann_token,
            json!({ "memberIds": [bob_id, cy_id], "workspaceId": "ws-1" }),
        ),
    )
    .await;
    assert_eq!(group.status, StatusCode::CREATED);
    assert_eq!(group.body["workspaceId"], "ws-1");

    let unknown_member = send(
        &app,
        create(&ann_token, json!({ "memberIds": ["no-such-user"] })),
    )
    .await;
    assert_error(&unknown_member, 404, "not_found");

    let wrong_type = send(&app, create(&ann_token, json!({ "memberIds": "bob" }))).await;
    assert_error(&wrong_type, 400, "bad_request");
    let long_title = send(
        &app,
        create(
            &ann_token,
            json!({ "memberIds": [bob_id], "title": "t".repeat(5000) }),
        ),
    )
    .await;
    assert_error(&long_title, 400, "bad_request");

    // Lists: newest first, paged by cursor.
    let page1 = send(&app, get("/api/v1/conversations?limit=2", &ann_token)).await;
    assert_eq!(page1.status, StatusCode::OK);
    let ids: Vec<&str> = page1.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            group.body["id"].as_str().unwrap(),
            titled.body["id"].as_str().unwrap()
        ]
    );
    let cursor = page1.body["nextCursor"].as_str().unwrap();
    let page2 = send(
        &app,
        get(
            &format!("/api/v1/conversations?limit=2&cursor={cursor}"),
            &ann_token,
        ),
    )
    .await;
    assert_eq!(page2.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(page2.body["items"][0]["id"], direct_id.as_str());
    assert_eq!(page2.body["nextCursor"], Value::Null);

    // Cy only sees the group.
    let cy_token = send(
        &app,
        post(
            "/api/v1/auth/login",
            json!({ "email": "cy@example.com", "password": "correct horse battery" }),
        ),
    )
    .await
    .body["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let cy_list = send(&app, get("/api/v1/conversations", &cy_token)).await;
    assert_eq!(cy_list.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(cy_list.body["nextCursor"], Value::Null);

    let bad_limit = send(&app, get("/api/v1/conversations?limit=0", &ann_token)).await;
    assert_error(&bad_limit, 400, "bad_request");
}

#[actix_web::test]
async fn history_pages_backwards_for_members_only() {
    let ctx = ctx();
    let app = app(&ctx).await;
    let (_, ann_token, _) = register(&app, "ann@example.com", "Ann").await;
    let (bob, _, _) = register(&app, "bob@example.com", "Bob").await;
    let (_, eve_token, _) = register(&app, "eve@example.com", "Eve").await;
    let created = send(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/conversations")
            .insert_header((AUTHORIZATION, format!("Bearer {ann_token}")))
            .set_json(json!({ "memberIds": [bob["id"]] })),
    )
    .await;
    let conv_id = created.body["id"].as_str().unwrap().to_owned();
    let sender = UserId(bob["id"].as_str().unwrap().to_owned());
    for i in 1..=5 {
        ctx.store
            .append_message(NewMessage {
                conversation_id: ConversationId(conv_id.clone()),
                sender_id: sender.clone(),
                client_id: Some(format!("c{i}")),
                body: Body::Text {
                    text: format!("message {i}"),
                },
            })
            .await
            .unwrap();
    }
    let path = format!("/api/v1/conversations/{conv_id}/messages");
    let seqs = |reply: &Reply| -> Vec<u64> {
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };

    let all = send(&app, get(&path, &ann_token)).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(seqs(&all), vec![1, 2, 3, 4, 5]);
    assert_eq!(all.body["nextCursor"], Value::Null);
    let first = &all.body["items"][0];
    assert_eq!(first["text"], "message 1");
    assert_eq!(first["senderId"], bob["id"]);
    assert_eq!(first["clientId"], "c1");
    assert_eq!(first["conversationId"], conv_id.as_str());

    let p1 = send(&app, get(&format!("{path}?limit=2"), &ann_token)).await;
    assert_eq!(seqs(&p1), vec![4, 5]);
    assert_eq!(p1.body["nextCursor"], "4");
    let p2 = send(&app, get(&format!("{path}?limit=2&before=4"), &ann_token)).await;
    assert_eq!(seqs(&p2), vec![2, 3]);
    assert_eq!(p2.body["nextCursor"], "2");
    let p3 = send(&app, get(&format!("{path}?limit=2&before=2"), &ann_token)).await;
    assert_eq!(seqs(&p3), vec![1]);
    assert_eq!(p3.body["nextCursor"], Value::Null);

    for bad in [
        "limit=0",
        "limit=201",
        "limit=ten",
        "before=abc",
        "before=0",
    ] {
        let reply = send(&app, get(&format!("{path}?{bad}"), &ann_token)).await;
        assert_error(&reply, 400, "bad_request");
    }
    let max = send(&app, get(&format!("{path}?limit=200"), &ann_token)).await;
    assert_eq!(max.status, StatusCode::OK);

    // A non-member and an unknown id get the same 404.
    let outsider = send(&app, get(&path, &eve_token)).await;
    assert_error(&outsider, 404, "not_found");
    let unknown = send(
        &app,
        get("/api/v1/conversations/does-not-exist/messages", &ann_token),
    )
    .await;
    assert_error(&unknown, 404, "not_found");
    assert_eq!(outsider.body, unknown.body);

    let anonymous = send(&app, test::TestRequest::get().uri(&path)).await;
    assert_error(&anonymous, 401, "unauthorized");
}

// ---------------------------------------------------------------- routing, ops

#[actix_web::test]
async fn unknown_routes_and_methods_answer_json() {
    let ctx = ctx();
    let app = app(&ctx).await;
    let reply = send(&app, test::TestRequest::get().uri("/nope")).await;
    assert_error(&reply, 404, "not_found");
    let reply = send(&app, test::TestRequest::get().uri("/api/v1/nope")).await;
    assert_error(&reply, 404, "not_found");
    let reply = send(&app, test::TestRequest::get().uri("/api/v1/auth/login")).await;
    assert_error(&reply, 405, "method_not_allowed");
}

#[actix_web::test]
async fn health_and_readiness() {
    let ctx = ctx();
    let app = app(&ctx).await;
    let health = send(&app, test::TestRequest::get().uri("/health")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");

    let ready = send(&app, test::TestRequest::get().uri("/ready")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.body,
        json!({ "status": "ok", "checks": { "store": "ok", "blobs": "ok" } })
    );

    ctx.store.set_down(true);
    let down = send(&app, test::TestRequest::get().uri("/ready")).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.body["checks"]["store"], "error");
    assert_eq!(down.body["error"]["code"], "unavailable");
    // Still alive, though.
    let health = send(&app, test::TestRequest::get().uri("/health")).await;
    assert_eq!(health.status, StatusCode::OK);
}

#[actix_web::test]
async fn store_failures_are_internal_errors_without_details() {
    let ctx = ctx();
    let app = app(&ctx).await;
    ctx.store.set_down(true);
    let reply = send(
        &app,
        post(
            "/api/v1/auth/register",
            json!({ "email": "f@example.com", "password": "password123", "name": "F" }),
        ),
    )
    .await;
    assert_error(&reply, 500, "internal");
    let text = reply.body.to_string();
    assert!(
        !text.contains("outage") && !text.contains("test store"),
        "{text}"
    );
}

// ---------------------------------------------------------------- rate limits

fn from_ip(req: test::TestRequest, ip: &str) -> test::TestRequest {
    req.peer_addr(format!("{ip}:40000").parse().unwrap())
}

#[actix_web::test]
async fn per_ip_limit_answers_429_with_retry_after() {
    let ctx = ctx_with(&[("HUDDLE__RATE_LIMITS__HTTP_IP_PER_MINUTE", "3")]);
    let app = app(&ctx).await;
    for _ in 0..3 {
        let reply = send(
            &app,
            from_ip(test::TestRequest::get().uri("/api/v1/auth/me"), "10.0.0.1"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let limited = send(
        &app,
        from_ip(test::TestRequest::get().uri("/api/v1/auth/me"), "10.0.0.1"),
    )
    .await;
    assert_error(&limited, 429, "rate_limited");
    let retry: u64 = limited
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=120).contains(&retry), "{retry}");

    // Another address is not affected; operations endpoints never are.
    let other = send(
        &app,
        from_ip(test::TestRequest::get().uri("/api/v1/auth/me"), "10.0.0.2"),
    )
    .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    let health = send(
        &app,
        from_ip(test::TestRequest::get().uri("/health"), "10.0.0.1"),
    )
    .await;
    assert_eq!(health.status, StatusCode::OK);
}

#[actix_web::test]
async fn per_user_limit_follows_the_token_across_addresses() {
    let ctx = ctx_with(&[("HUDDLE__RATE_LIMITS__HTTP_USER_PER_MINUTE", "2")]);
    let app = app(&ctx).await;
    let token = external_token("busy-user", None, 300);
    for ip in ["10.0.1.1", "10.0.1.2"] {
        let reply = send(&app, from_ip(get("/api/v1/auth/me", &token), ip)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let limited = send(&app, from_ip(get("/api/v1/auth/me", &token), "10.0.1.3")).await;
    assert_error(&limited, 429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    let someone_else = external_token("calm-user", None, 300);
    let reply = send(
        &app,
        from_ip(get("/api/v1/auth/me", &someone_else), "10.0.1.3"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[actix_web::test]
async fn login_and_register_have_their_own_per_ip_limit() {
    let ctx = ctx_with(&[("HUDDLE__RATE_LIMITS__AUTH_IP_PER_MINUTE", "2")]);
    let app = app(&ctx).await;
    let attempt = || {
        from_ip(
            post(
                "/api/v1/auth/login",
                json!({ "email": "x@example.com", "password": "password123" }),
            ),
            "10.0.2.1",
        )
    };
    assert_error(&send(&app, attempt()).await, 401, "unauthorized");
    assert_error(&send(&app, attempt()).await, 401, "unauthorized");
    let limited = send(&app, attempt()).await;
    assert_error(&limited, 429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    let register = send(
        &app,
        from_ip(
            post(
                "/api/v1/auth/register",
                json!({ "email": "x@example.com", "password": "password123", "name": "X" }),
            ),
            "10.0.2.1",
        ),
    )
    .await;
    assert_error(&register, 429, "rate_limited");
    // Other API routes from that address are still served.
    let me = send(
        &app,
        from_ip(test::TestRequest::get().uri("/api/v1/auth/me"), "10.0.2.1"),
    )
    .await;
    assert_error(&me, 401, "unauthorized");
}

// ---------------------------------------------------------------- settings

#[actix_web::test]
async fn production_refuses_weak_or_missing_secrets() {
    let load = |pairs: &[(&str, &str)]| {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(&config_dir(), &env)
    };
    assert!(load(&[("HUDDLE_ENV", "production")]).is_err());
    assert!(load(&[
        ("HUDDLE_ENV", "production"),
        ("JWT_SECRET", "changeme"),
        ("REFRESH_SECRET", REFRESH_SECRET),
    ])
    .is_err());
    assert!(load(&[
        ("HUDDLE_ENV", "production"),
        ("JWT_SECRET", JWT_SECRET),
        ("REFRESH_SECRET", "too-short"),
    ])
    .is_err());
    let ok = load(&[
        ("HUDDLE_ENV", "production"),
        ("JWT_SECRET", JWT_SECRET),
        ("REFRESH_SECRET", REFRESH_SECRET),
    ])
    .unwrap();
    assert!(ok.is_production());
    // Development makes up secrets instead of failing.
    let dev = load(&[]).unwrap();
    assert!(dev.auth.jwt_secret.len() >= 32);
}
