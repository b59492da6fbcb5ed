//! HTTP handlers for accounts (`/api/v1/auth/...`): they parse the request
//! JSON, call [`crate::accounts::Accounts`], and answer
//! `{ user, accessToken, refreshToken }` (201 for register, 200 otherwise).

use crate::accounts::{Accounts, Registration, Session};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

/// `POST /auth/register` body.
#[derive(Debug, Deserialize)]
pub struct RegisterBody {
    email: String,
    password: String,
    name: String,
    #[serde(default)]
    username: Option<String>,
}

/// `POST /auth/login` body.
#[derive(Debug, Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
}

/// `POST /auth/refresh` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshBody {
    refresh_token: String,
}

fn accounts(state: &AppState) -> Accounts {
    Accounts::new(state.store.clone(), state.jwt.clone())
}

fn session_json(state: &AppState, session: &Session) -> serde_json::Value {
    json!({
        "user": session.user.public(),
        "accessToken": session.access_token,
        "refreshToken": session.refresh_token,
        "expiresIn": state.jwt.access_ttl_secs(),
    })
}

/// `POST /api/v1/auth/register {email, password, name, username?}` → 201.
pub async fn register(
    state: web::Data<AppState>,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let session = accounts(&state)
        .register(Registration {
            email: body.email,
            password: body.password,
            name: body.name,
            username: body.username,
        })
        .await?;
    log::info!("registered user {}", session.user.id);
    Ok(HttpResponse::Created().json(session_json(&state, &session)))
}

/// `POST /api/v1/auth/login {email, password}` → 200.
pub async fn login(
    state: web::Data<AppState>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let session = accounts(&state).login(&body.email, &body.password).await?;
    Ok(HttpResponse::Ok().json(session_json(&state, &session)))
}

/// `POST /api/v1/auth/refresh {refreshToken}` → 200 with a new refresh token;
/// the one presented stops working.
pub async fn refresh(
    state: web::Data<AppState>,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let session = accounts(&state).refresh(&body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(session_json(&state, &session)))
}

/// `GET /api/v1/auth/me` → the caller's public user.
pub async fn me(state: web::Data<AppState>, who: AuthUser) -> Result<HttpResponse, ApiError> {
    let user = state
        .store
        .user_by_id(&who.user_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("user not found".to_owned()))?;
    Ok(HttpResponse::Ok().json(user.public()))
}
