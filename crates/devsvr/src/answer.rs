//! The introspection response in the three forms a gateway may ask for with `Accept`: a JWT
//! (`application/jwt`), an RFC 9701 signed response (`application/token-introspection+jwt`),
//! or RFC 7662 JSON with the JWT in a `jwt` member.

use serde_json::{json, Map, Value};

use crate::http::Reply;
use crate::idsvr::{new_token, IdConfig, Token};
use crate::jwt;

/// The access token's claims (what the API receives as a JWT).
fn access_claims(cfg: &IdConfig, port: u64, t: &Token) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("iss".into(), format!("http://127.0.0.1:{port}").into());
    c.insert("sub".into(), t.sub.clone().into());
    c.insert("client_id".into(), cfg.client_id.clone().into());
    c.insert("scope".into(), t.scope.clone().into());
    c.insert("aud".into(), "api".into());
    c.insert("iat".into(), t.iat.into());
    c.insert("exp".into(), t.exp.into());
    c.insert("jti".into(), new_token().into());
    if !t.cnf.is_empty() {
        c.insert("cnf".into(), Value::Object(t.cnf.clone()));
    }
    c.extend(t.claims.clone());
    c
}

pub(crate) fn answer(
    cfg: &IdConfig,
    port: u64,
    active: Option<&Token>,
    accept: &str,
    now: i64,
) -> Reply {
    let cache = |r: Reply, t: &Token| match &cfg.cache_control {
        None => r.with("Cache-Control", &format!("max-age={}", t.exp - now)),
        Some(v) if v.is_empty() => r,
        Some(v) => r.with("Cache-Control", v),
    };
    let inactive_json =
        || Reply::json(200, &json!({ "active": false })).with("Cache-Control", "no-store");
    if accept.contains("application/token-introspection+jwt") {
        let ti = match active {
            Some(t) => {
                let mut o = access_claims(cfg, port, t);
                o.insert("active".into(), true.into());
                o.insert("token_type".into(), t.token_type().into());
                Value::Object(o)
            }
            None => json!({ "active": false }),
        };
        let mut c = Map::new();
        c.insert("iss".into(), format!("http://127.0.0.1:{port}").into());
        c.insert("aud".into(), cfg.client_id.clone().into());
        c.insert("iat".into(), now.into());
        c.insert("token_introspection".into(), ti);
        let body = jwt::sign_padded(&c, "token-introspection+jwt", cfg.jwt_size);
        let r = Reply::new(200, "application/token-introspection+jwt", body);
        return match active {
            Some(t) => cache(r, t),
            None => r.with("Cache-Control", "no-store"),
        };
    }
    let Some(t) = active else {
        return if accept.contains("application/jwt") {
            Reply::empty(204)
        } else {
            inactive_json()
        };
    };
    let access = jwt::sign_padded(&access_claims(cfg, port, t), "at+jwt", cfg.jwt_size);
    if accept.contains("application/jwt") {
        return cache(Reply::new(200, "application/jwt", access), t);
    }
    let mut o = access_claims(cfg, port, t);
    o.insert("active".into(), true.into());
    o.insert("token_type".into(), t.token_type().into());
    o.insert("jwt".into(), access.into());
    cache(Reply::json(200, &Value::Object(o)), t)
}
