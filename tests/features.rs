//! Beyond Curity (issue 4): scopes, claims as variables, token sources, formats, 503, CORS.

mod support;

use support::http::request;
use support::*;

const FORBIDDEN: &str =
    r#"{"code":"forbidden","message":"Access denied due to insufficient scope"}"#;

#[test]
fn required_scopes_are_enforced_with_403() {
    let s = Stack::start("", "phantom_token_required_scope read write;");
    let partial = s.ids.issue("read", 300);
    let r = s.get_bearer("/", &partial);
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), FORBIDDEN);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="read write""#)
    );
    assert_eq!(s.echo.requests(), 0);
    let full = s.ids.issue("write admin read", 300);
    assert_eq!(s.get_bearer("/", &full).status, 200);
}

#[test]
fn scopes_are_checked_on_cache_hits_too() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let server = format!(
        "location /open {{ phantom_token on; phantom_token_introspection_endpoint /_introspect;
            phantom_token_cache c; proxy_pass http://127.0.0.1:{e}; }}
         location /admin {{ phantom_token on; phantom_token_introspection_endpoint /_introspect;
            phantom_token_cache c; phantom_token_required_scope admin;
            add_header X-Cache $phantom_token_cache_status always;
            proxy_pass http://127.0.0.1:{e}; }}
         {}",
        introspection_location(ids.port(), ""),
        e = echo.port()
    );
    let n = Nginx::start("phantom_token_cache_zone c:1m;", &server);
    let token = ids.issue("read", 300);
    let auth = format!("Bearer {token}");
    assert_eq!(
        request(n.port, "GET", "/open", &[("Authorization", &auth)], None).status,
        200
    );
    let r = request(n.port, "GET", "/admin", &[("Authorization", &auth)], None);
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert_eq!(ids.introspections(), 1);
}

#[test]
fn claims_and_jwt_are_variables() {
    let http =
        "log_format claims 'sub=$phantom_token_claim_sub dept=$phantom_token_claim_department \
                admin=$phantom_token_claim_admin';
                map $phantom_token_claim_department $is_sales { sales yes; default no; }";
    let api = "access_log claims.log claims;
               proxy_set_header X-Sub $phantom_token_claim_sub;
               proxy_set_header X-Client $phantom_token_claim_client_id;
               proxy_set_header X-Jwt $phantom_token_jwt;
               proxy_set_header X-Sales $is_sales;";
    let s = Stack::start(http, api);
    let token = s.ids.issue("read", 300);
    let mut extra = serde_json::Map::new();
    extra.insert("department".into(), "sales".into());
    extra.insert("admin".into(), true.into());
    s.ids.set_claims(&token, extra);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    let up = s.echo.last().unwrap();
    let jwt = up
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    let claims = devsvr::jwt_claims(&jwt).unwrap();
    assert_eq!(up.header("x-sub"), claims["sub"].as_str());
    assert_eq!(up.header("x-client"), Some("gateway"));
    assert_eq!(up.header("x-jwt"), Some(jwt.as_str()));
    assert_eq!(up.header("x-sales"), Some("yes"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = std::fs::read_to_string(s.nginx.dir.join("claims.log")).unwrap();
    assert!(
        log.contains(&format!(
            "sub={} dept=sales admin=true",
            claims["sub"].as_str().unwrap()
        )),
        "{log}"
    );
    // No token: the variables are empty (the 401 is logged with empty claims).
    s.get("/", &[]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = std::fs::read_to_string(s.nginx.dir.join("claims.log")).unwrap();
    assert!(
        log.lines().last().unwrap().starts_with("sub= dept="),
        "{log}"
    );
}

#[test]
fn custom_upstream_header_replaces_authorization() {
    let s = Stack::start("", "phantom_token_header X-Jwt-Assertion;");
    let token = s.ids.issue("read", 300);
    let r = s.get(
        "/",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("X-JWT-Assertion", "forged"),
        ],
    );
    assert_eq!(r.status, 200);
    let up = s.echo.last().unwrap();
    assert!(
        up.header("authorization").is_none(),
        "client Authorization must not be forwarded"
    );
    let values: Vec<&str> = up
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-jwt-assertion"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(!values.is_empty());
    for v in values {
        assert!(v.starts_with("Bearer ey"), "forged value survived: {v}");
    }
}

#[test]
fn token_can_come_from_a_cookie_or_query() {
    let s = Stack::start("", "phantom_token_source $cookie_at;");
    let token = s.ids.issue("read", 300);
    let r = s.get("/", &[("Cookie", &format!("other=1; at={token}"))]);
    assert_eq!(r.status, 200);
    assert!(s
        .echo
        .last()
        .unwrap()
        .header("authorization")
        .unwrap()
        .starts_with("Bearer ey"));
    let r = s.get("/", &[("Cookie", "other=1")]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="api""#));

    let s = Stack::start("", "phantom_token_source $arg_access_token;");
    let token = s.ids.issue("read", 300);
    assert_eq!(
        s.get(
            &format!("/ws?access_token={token}"),
            &[("Upgrade", "websocket")]
        )
        .status,
        200
    );
    assert_eq!(s.get("/ws", &[]).status, 401);
}

#[test]
fn json_field_format_reads_the_jwt_member() {
    let s = Stack::with_ids(
        IdConfig::default(),
        "",
        "phantom_token_response_format json_field jwt;",
        "proxy_set_header Accept application/json;",
    );
    let token = s.ids.issue("read", 300);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    let jwt = s
        .echo
        .last()
        .unwrap()
        .header("authorization")
        .unwrap()
        .to_string();
    assert_eq!(
        devsvr::jwt_claims(jwt.strip_prefix("Bearer ").unwrap()).unwrap()["scope"],
        "read"
    );
    assert_eq!(
        s.ids.last_introspection().unwrap().header("accept"),
        Some("application/json")
    );
    let r = s.get_bearer("/", "unknown");
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
}

#[test]
fn rfc9701_format_forwards_the_introspection_jwt() {
    let s = Stack::with_ids(
        IdConfig::default(),
        "",
        "phantom_token_response_format rfc9701; proxy_set_header X-Sub $phantom_token_claim_sub;",
        "proxy_set_header Accept application/token-introspection+jwt;",
    );
    let token = s.ids.issue("read", 300);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    let up = s.echo.last().unwrap();
    let jwt = up
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    let claims = devsvr::jwt_claims(&jwt).unwrap();
    assert_eq!(claims["token_introspection"]["active"], true);
    assert_eq!(
        up.header("x-sub"),
        claims["token_introspection"]["sub"].as_str()
    );
    assert_eq!(s.get_bearer("/", "unknown").status, 401);
}

#[test]
fn unavailable_identity_server_is_503_with_retry_after() {
    let s = Stack::start("", "");
    let token = s.ids.issue("read", 300);
    s.ids.set_fault(Fault::Unavailable {
        retry_after: Some(30),
    });
    let r = s.get_bearer("/", &token);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    s.ids.set_fault(Fault::Unavailable { retry_after: None });
    let r = s.get_bearer("/", &token);
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_none());
    assert!(s
        .nginx
        .wait_log("Introspection subrequest returned response code: 503"));
    s.ids.set_fault(Fault::Status(401));
    assert_eq!(s.get_bearer("/", &token).status, 502);
}

#[test]
fn error_responses_keep_add_header_always() {
    let s = Stack::start(
        "",
        "add_header Access-Control-Allow-Origin https://spa.example always;",
    );
    let r = s.get("/", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://spa.example")
    );
}

#[test]
fn bad_feature_configuration_fails_nginx_t() {
    let (ok, out) = nginx_test_config("", "location / { phantom_token_response_format xml; }");
    assert!(!ok);
    assert!(out.contains("phantom_token_response_format"), "{out}");
    let (ok, out) = nginx_test_config("", "location / { phantom_token_header \"Bad Header\"; }");
    assert!(!ok);
    assert!(out.contains("invalid header name"), "{out}");
    let (ok, out) = nginx_test_config(
        "",
        "location / { phantom_token_realm a; phantom_token_realm b; }",
    );
    assert!(!ok);
    assert!(
        out.contains("\"phantom_token_realm\" directive is duplicate"),
        "{out}"
    );
    let (ok, out) = nginx_test_config(
        "",
        "location / { phantom_token_client_credential id secret; }",
    );
    assert!(!ok);
    assert!(out.contains("proxy_set_header Authorization"), "{out}");
}
