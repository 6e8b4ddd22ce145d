//! The module beside lua-nginx-module in one nginx (issue 21): Debian's `libnginx-mod-http-lua`
//! (0.10.23, with its NDK) loaded into Debian's nginx 1.22.1 with this module.
//!
//! These tests run when the nginx under test is Debian's (`TEST_NGINX_BINARY=/usr/sbin/nginx`,
//! as `scripts/debian.sh test` sets it) and the Lua module is installed; otherwise each one
//! prints why it is skipped. `TEST_LUA=1` (set by `.ci/run`) makes a missing Lua module a
//! failure when the nginx is Debian's.
//!
//! The order in the access phase, observed here and asserted by
//! `access_phase_order_follows_postponement_and_load_order`:
//! - by default lua-nginx-module moves its access handler to the end of the access phase on the
//!   first request of each worker (`access_by_lua_no_postpone off`), so `phantom_token` runs
//!   first, whichever module is loaded first, and `access_by_lua` sees the JWT and variables;
//! - with `access_by_lua_no_postpone on`, nginx's own rule applies: the access handlers run in
//!   the reverse order of registration, i.e. of `load_module` lines, so the module loaded
//!   *last* runs first. Lua loaded after this module runs before it; loaded before it (as
//!   Debian's `modules-enabled` orders `50-mod-http-lua` before `50-mod-http-phantom-token`),
//!   after it.
//! - `rewrite_by_lua` always runs before the access phase.

mod support;

use std::path::Path;

use support::*;

const NDK: &str = "/usr/lib/nginx/modules/ndk_http_module.so";
const LUA: &str = "/usr/lib/nginx/modules/ngx_http_lua_module.so";
const DEBIAN_NGINX: &str = "/usr/sbin/nginx";

/// The `load_module` lines of Debian's NDK and Lua modules, or `None` (with a note) when these
/// tests cannot run with the nginx under test.
fn lua_modules() -> Option<String> {
    let ours = nginx_binary();
    let debian = Path::new(DEBIAN_NGINX);
    let is_debian = debian.exists() && ours.canonicalize().ok() == debian.canonicalize().ok();
    if !is_debian {
        eprintln!(
            "skipped: Debian's Lua module is built for Debian's nginx; run with \
             TEST_NGINX_BINARY={DEBIAN_NGINX} (scripts/debian.sh test --test lua)"
        );
        return None;
    }
    let missing: Vec<_> = [NDK, LUA]
        .into_iter()
        .filter(|m| !Path::new(m).exists())
        .collect();
    if !missing.is_empty() {
        let why = format!(
            "{missing:?} not installed (apt-get install libnginx-mod-http-lua; scripts/debian.sh \
             installs it)"
        );
        assert!(
            std::env::var("TEST_LUA").as_deref() != Ok("1"),
            "TEST_LUA=1: {why}"
        );
        eprintln!("skipped: {why}");
        return None;
    }
    Some(format!("load_module {NDK};\nload_module {LUA};"))
}

/// Where the Lua modules are loaded relative to this module.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Load {
    /// `load_module` lines of Lua ahead of this module's.
    LuaFirst,
    /// `load_module` lines of Lua after this module's.
    LuaLast,
}

/// nginx with both modules, `http` in the http block and `server` in the server.
fn start(lua: &str, load: Load, http: &str, server: &str) -> Nginx {
    match load {
        Load::LuaFirst => Nginx::start_after(lua, 2, http, server, ""),
        Load::LuaLast => Nginx::start_after("", 2, http, server, lua),
    }
}

/// Identity server, echo API, and nginx with both modules; `api` goes into `location /`
/// (protected, with the cache zone `c`), `http` into the http block.
struct LuaStack {
    ids: IdServer,
    echo: EchoServer,
    nginx: Nginx,
}

impl LuaStack {
    fn start(lua: &str, load: Load, http: &str, api: &str) -> LuaStack {
        LuaStack::with_server(lua, load, http, api, "")
    }

    /// As [`LuaStack::start`], with `more` added to the server block.
    fn with_server(lua: &str, load: Load, http: &str, api: &str, more: &str) -> LuaStack {
        let ids = IdServer::start(IdConfig::default()).unwrap();
        let echo = EchoServer::start().unwrap();
        let server = format!(
            "{}\n{}\n{more}",
            api_location(echo.port(), &format!("phantom_token_cache c;\n{api}")),
            introspection_location(ids.port(), "")
        );
        let http = format!("phantom_token_cache_zone c:1m;\n{http}");
        let nginx = start(lua, load, &http, &server);
        LuaStack { ids, echo, nginx }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http::request(self.nginx.port, "GET", path, headers, None)
    }

    fn get_bearer(&self, path: &str, token: &str) -> Response {
        self.get(path, &[("Authorization", &format!("Bearer {token}"))])
    }

    /// The last request the echo API received, and its `Authorization` header.
    fn upstream(&self) -> (devsvr::Recorded, String) {
        let last = self.echo.last().expect("the API received a request");
        let auth = last.header("authorization").unwrap_or_default().to_string();
        (last, auth)
    }
}

/// The claims of the JWT in an upstream `Authorization: Bearer <JWT>`.
fn jwt_claims(auth: &str) -> serde_json::Map<String, serde_json::Value> {
    let jwt = auth.strip_prefix("Bearer ").expect("a Bearer header");
    devsvr::jwt_claims(jwt).unwrap_or_else(|| panic!("not a JWT: {auth}"))
}

/// No header or body of the upstream request holds `token`.
fn assert_token_absent(rec: &devsvr::Recorded, token: &str) {
    assert!(!rec.target.contains(token), "{rec:?}");
    for (k, v) in &rec.headers {
        assert!(
            !v.contains(token),
            "the opaque token reached the API in {k}"
        );
    }
    assert!(!String::from_utf8_lossy(&rec.body).contains(token));
}

/// What `access_by_lua` saw, sent upstream in headers: whether the module had run (cache
/// status and `sub` set, the client's `Authorization` replaced by the JWT).
const RECORD_ACCESS: &str = r#"
    access_by_lua_block {
        ngx.req.set_header("X-Lua-Saw-Cache", "=" .. tostring(ngx.var.phantom_token_cache_status))
        ngx.req.set_header("X-Lua-Saw-Sub", "=" .. tostring(ngx.var.phantom_token_claim_sub))
        local auth = ngx.var.http_authorization or ""
        ngx.req.set_header("X-Lua-Saw-Jwt", tostring(auth:find("^Bearer eyJ") ~= nil))
        ngx.log(ngx.NOTICE, "lua access ran for ", ngx.var.uri)
    }
"#;

#[test]
fn access_phase_order_follows_postponement_and_load_order() {
    let Some(lua) = lua_modules() else { return };
    for load in [Load::LuaFirst, Load::LuaLast] {
        for no_postpone in [false, true] {
            let http = if no_postpone {
                "access_by_lua_no_postpone on;"
            } else {
                ""
            };
            let s = LuaStack::start(&lua, load, http, RECORD_ACCESS);
            let case = format!("{load:?}, access_by_lua_no_postpone {no_postpone}");
            let module_first = !(no_postpone && load == Load::LuaLast);
            // Several requests: the postponement happens on a worker's first request.
            for i in 0..4 {
                let token = s.ids.issue("read", 300);
                let r = s.get_bearer(&format!("/ok{i}"), &token);
                assert_eq!(r.status, 200, "{case}: {}", r.text());
                let (rec, auth) = s.upstream();
                let sub = jwt_claims(&auth)["sub"].as_str().unwrap().to_string();
                let saw = |h| rec.header(h).unwrap_or("<none>").to_string();
                if module_first {
                    assert_eq!(saw("x-lua-saw-cache"), "=MISS", "{case}");
                    assert_eq!(saw("x-lua-saw-sub"), format!("={sub}"), "{case}");
                    assert_eq!(saw("x-lua-saw-jwt"), "true", "{case}");
                } else {
                    // Before the module runs the cache status is not found (nil in Lua) and
                    // a claim is empty.
                    assert_eq!(saw("x-lua-saw-cache"), "=nil", "{case}");
                    assert_eq!(saw("x-lua-saw-sub"), "=", "{case}");
                    assert_eq!(saw("x-lua-saw-jwt"), "false", "{case}");
                }
                assert_token_absent(&rec, &token);
            }
            // Without a token the module answers 401: Lua never runs when it comes second.
            let r = s.get("/none", &[]);
            assert_eq!(r.status, 401, "{case}");
            let token = s.ids.issue("read", 300);
            assert_eq!(s.get_bearer("/after", &token).status, 200, "{case}");
            assert!(s.nginx.wait_log("lua access ran for /after"), "{case}");
            let ran_for_401 = s.nginx.error_log().contains("lua access ran for /none");
            assert_eq!(ran_for_401, !module_first, "{case}");
            s.nginx.assert_clean_log();
        }
    }
}

#[test]
fn lua_reads_the_claim_and_cache_status_variables() {
    let Some(lua) = lua_modules() else { return };
    let s = LuaStack::with_server(
        &lua,
        Load::LuaFirst,
        "",
        r#"
        header_filter_by_lua_block {
            ngx.header["X-Lua-Sub"] = ngx.var.phantom_token_claim_sub
            ngx.header["X-Lua-Cache"] = ngx.var.phantom_token_cache_status
            ngx.header["X-Lua-Scope"] = ngx.var.phantom_token_claim_scope
            ngx.header["X-Lua-Filter"] = "ran"
        }
        log_by_lua_block {
            ngx.log(ngx.NOTICE, "lua log: sub=", ngx.var.phantom_token_claim_sub,
                    " cache=", ngx.var.phantom_token_cache_status, " uri=", ngx.var.uri)
        }"#,
        r#"
        location /lua/ {
            phantom_token on;
            phantom_token_introspection_endpoint /_introspect;
            phantom_token_cache c;
            content_by_lua_block {
                ngx.say("sub=", ngx.var.phantom_token_claim_sub,
                        " cache=", ngx.var.phantom_token_cache_status)
            }
        }"#,
    );
    let token = s.ids.issue("read write", 300);
    let r = s.get_bearer("/first", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    let sub = jwt_claims(&s.upstream().1)["sub"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sub.starts_with("user-"), "{sub}");
    assert_eq!(r.header("x-lua-sub"), Some(sub.as_str()));
    assert_eq!(r.header("x-lua-cache"), Some("MISS"));
    assert_eq!(r.header("x-lua-scope"), Some("read write"));
    let r = s.get_bearer("/second", &token);
    assert_eq!(r.header("x-lua-sub"), Some(sub.as_str()));
    assert_eq!(r.header("x-lua-cache"), Some("HIT"));
    assert!(s
        .nginx
        .wait_log(&format!("lua log: sub={sub} cache=HIT uri=/second")));
    // Lua as the API itself (content_by_lua) behind the module.
    let r = s.get_bearer("/lua/hello", &token);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("sub={sub} cache=HIT\n"));
    let other = s.ids.issue("read", 300);
    let r = s.get_bearer("/lua/hello", &other);
    assert!(r.text().ends_with(" cache=MISS\n"), "{}", r.text());
    assert_eq!(s.get("/lua/hello", &[]).status, 401);
    // header_filter_by_lua and log_by_lua run for the module's rejections too.
    let r = s.get("/rejected", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-lua-filter"), Some("ran"));
    assert!(s.nginx.wait_log("lua log: sub= cache=nil uri=/rejected"));
    assert_eq!(s.ids.introspections(), 2);
    s.nginx.assert_clean_log();
}

#[test]
fn access_by_lua_set_header_authorization_replaces_the_jwt_upstream() {
    let Some(lua) = lua_modules() else { return };
    // access_by_lua runs after the module (postponed): what it sets is what goes upstream.
    let s = LuaStack::start(
        &lua,
        Load::LuaFirst,
        "",
        r#"
        access_by_lua_block {
            local mode = ngx.var.http_x_mode
            if mode == "replace" then
                ngx.req.set_header("Authorization", "Lua-Scheme from-lua")
            elseif mode == "keep" then
                ngx.req.set_header("Authorization", "Bearer " .. ngx.var.phantom_token_jwt)
                ngx.req.set_header("X-Lua", "other header")
            elseif mode == "clear" then
                ngx.req.clear_header("Authorization")
            end
        }"#,
    );
    let token = s.ids.issue("read", 300);
    let bearer = format!("Bearer {token}");
    let get = |mode: &str| {
        let r = s.get("/", &[("Authorization", &bearer), ("X-Mode", mode)]);
        assert_eq!(r.status, 200, "{mode}: {}", r.text());
        let (rec, auth) = s.upstream();
        assert_token_absent(&rec, &token);
        let n = rec
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .count();
        (rec, auth, n)
    };
    let (_, auth, n) = get("none");
    assert_eq!(n, 1);
    let jwt = auth.clone();
    assert!(jwt_claims(&jwt).contains_key("sub"));
    let (_, auth, n) = get("replace");
    assert_eq!(
        (auth.as_str(), n),
        ("Lua-Scheme from-lua", 1),
        "Lua's value wins"
    );
    let (rec, auth, n) = get("keep");
    assert_eq!((auth.as_str(), n), (jwt.as_str(), 1), "$phantom_token_jwt");
    assert_eq!(rec.header("x-lua"), Some("other header"));
    let (_, _, n) = get("clear");
    assert_eq!(n, 0, "clear_header removes the module's header too");
    assert_eq!(s.ids.introspections(), 1);
    s.nginx.assert_clean_log();
}

#[test]
fn rewrite_by_lua_set_header_authorization_is_the_token_the_module_reads() {
    let Some(lua) = lua_modules() else { return };
    // rewrite_by_lua runs before the access phase: a Bearer header it sets is the token's
    // source, replaced by the JWT as a client's would be.
    let s = LuaStack::start(
        &lua,
        Load::LuaLast,
        "",
        r#"
        rewrite_by_lua_block {
            local key = ngx.var.http_x_api_key
            if key then
                ngx.req.set_header("Authorization", "Bearer " .. key)
                ngx.req.clear_header("X-Api-Key")
            end
        }"#,
    );
    let token = s.ids.issue("read", 300);
    let r = s.get("/", &[("X-Api-Key", &token)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let (rec, auth) = s.upstream();
    assert!(jwt_claims(&auth).contains_key("sub"));
    assert_eq!(rec.header("x-api-key"), None);
    assert_token_absent(&rec, &token);
    assert_eq!(s.get("/", &[]).status, 401);
    s.nginx.assert_clean_log();
}

#[test]
fn rewrite_by_lua_hands_a_token_from_a_custom_place_to_phantom_token_source() {
    let Some(lua) = lua_modules() else { return };
    // The token travels as `X-Session: v1.<token>`; Lua extracts it into $lua_token (declared
    // with `set`, which runs before rewrite_by_lua) and removes the header itself, since the
    // module can only remove $http_, $cookie_ and $arg_ sources.
    let s = LuaStack::start(
        &lua,
        Load::LuaFirst,
        "",
        r#"
        set $lua_token "";
        rewrite_by_lua_block {
            local session = ngx.var.http_x_session
            if session then
                local t = session:match("^v1%.(.+)$")
                if t then
                    ngx.var.lua_token = t
                end
                ngx.req.clear_header("X-Session")
            end
        }
        phantom_token_source $lua_token;
        add_header X-Cache $phantom_token_cache_status always;"#,
    );
    let token = s.ids.issue("read", 300);
    let session = format!("v1.{token}");
    let r = s.get("/a", &[("X-Session", &session)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cache"), Some("MISS"));
    let (rec, auth) = s.upstream();
    assert!(jwt_claims(&auth).contains_key("sub"));
    assert_eq!(rec.header("x-session"), None);
    assert_token_absent(&rec, &token);
    let r = s.get("/b", &[("X-Session", &session)]);
    assert_eq!(r.header("x-cache"), Some("HIT"));
    // No header, or a value Lua does not accept: the source is empty, so no token (401).
    for headers in [vec![], vec![("X-Session", "v2.whatever")]] {
        let r = s.get("/c", &headers);
        assert_eq!(r.status, 401, "{headers:?}");
        assert!(r.header("www-authenticate").is_some());
    }
    // The client's Authorization is not the source here: it is replaced by the JWT.
    let r = s.get("/d", &[("Authorization", &format!("Bearer {token}"))]);
    assert_eq!(r.status, 401);
    let r = s.get(
        "/e",
        &[("X-Session", &session), ("Authorization", "Bearer client")],
    );
    assert_eq!(r.status, 200);
    let (_, auth) = s.upstream();
    assert!(jwt_claims(&auth).contains_key("sub"), "{auth}");
    assert_eq!(s.ids.introspections(), 1);
    // nginx -t warns that the module cannot remove a Lua variable itself.
    assert!(
        s.nginx.error_log().contains("cannot remove \"$lua_token\""),
        "{}",
        s.nginx.error_log()
    );
    s.nginx.assert_clean_log();
}

#[test]
fn lua_exit_401_before_the_module_means_no_introspection() {
    let Some(lua) = lua_modules() else { return };
    // In rewrite_by_lua (any load order) and in access_by_lua when Lua's access handler runs
    // first (access_by_lua_no_postpone on, Lua loaded after this module).
    let gate = r#"
        if ngx.var.http_x_client_id ~= "known" then
            ngx.header["WWW-Authenticate"] = 'Bearer realm="lua"'
            return ngx.exit(ngx.HTTP_UNAUTHORIZED)
        end"#;
    let rewrite = format!("rewrite_by_lua_block {{ {gate} }}");
    let access = format!("access_by_lua_block {{ {gate} }}");
    let cases = [
        (Load::LuaFirst, "", rewrite.as_str()),
        (Load::LuaLast, "", rewrite.as_str()),
        (
            Load::LuaLast,
            "access_by_lua_no_postpone on;",
            access.as_str(),
        ),
    ];
    for (load, http, api) in cases {
        let s = LuaStack::start(&lua, load, http, api);
        let case = format!("{load:?} {http} {api}");
        let token = s.ids.issue("read", 300);
        let bearer = format!("Bearer {token}");
        for _ in 0..3 {
            let r = s.get("/", &[("Authorization", &bearer)]);
            assert_eq!(r.status, 401, "{case}");
            assert_eq!(
                r.header("www-authenticate"),
                Some(r#"Bearer realm="lua""#),
                "{case}"
            );
        }
        assert_eq!(s.ids.introspections(), 0, "{case}");
        assert_eq!(s.echo.requests(), 0, "{case}");
        let r = s.get("/", &[("Authorization", &bearer), ("X-Client-Id", "known")]);
        assert_eq!(r.status, 200, "{case}");
        assert_eq!(s.ids.introspections(), 1, "{case}");
        s.nginx.assert_clean_log();
    }
}

#[test]
fn reload_with_both_modules_keeps_working() {
    let Some(lua) = lua_modules() else { return };
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let http = "phantom_token_cache_zone c:1m;\nlua_shared_dict seen 1m;";
    let server = |version: &str| {
        format!(
            "{}\n{}",
            api_location(
                echo.port(),
                &format!(
                    "phantom_token_cache c;
                     access_by_lua_block {{
                         ngx.shared.seen:incr(\"n\", 1, 0)
                         ngx.req.set_header(\"X-Lua-Version\", \"{version}\")
                     }}
                     header_filter_by_lua_block {{
                         ngx.header[\"X-Lua-Cache\"] = ngx.var.phantom_token_cache_status
                         ngx.header[\"X-Lua-Seen\"] = ngx.shared.seen:get(\"n\")
                     }}"
                )
            ),
            introspection_location(ids.port(), "")
        )
    };
    let nginx = Nginx::start_after(&lua, 2, http, &server("v1"), "");
    let token = ids.issue("read", 300);
    // The one request of this test (before and after each reload).
    let send = || {
        http::request(
            nginx.port,
            "GET",
            "/",
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        )
    };
    let get = || {
        let r = send();
        assert_eq!(r.status, 200, "{}", r.text());
        let version = echo
            .last()
            .unwrap()
            .header("x-lua-version")
            .unwrap()
            .to_string();
        let cache = r.header("x-lua-cache").unwrap().to_string();
        (version, cache)
    };
    assert_eq!(get(), ("v1".into(), "MISS".into()));
    // `nginx -s reload` itself: the signalling process reads the configuration, both modules
    // included, to find the master's pid.
    let workers = || nginx.error_log().matches("start worker process").count();
    let before = workers();
    let out = std::process::Command::new(nginx_binary())
        .arg("-p")
        .arg(&nginx.dir)
        .arg("-c")
        .arg(nginx.dir.join("nginx.conf"))
        .args(["-s", "reload"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while workers() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            nginx.error_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(get(), ("v1".into(), "HIT".into()), "the zone survives");
    nginx.reconfigure(http, &server("v2"));
    assert_eq!(get(), ("v2".into(), "HIT".into()), "the new Lua code runs");
    for _ in 0..2 {
        nginx.reload();
        assert_eq!(get(), ("v2".into(), "HIT".into()));
    }
    assert_eq!(ids.introspections(), 1);
    // The shared dict, like the module's zone, kept its count over the reloads.
    assert_eq!(send().header("x-lua-seen"), Some("6"));
    nginx.assert_clean_log();
}

#[test]
fn server_level_rewrite_by_lua_runs_for_the_introspection_subrequest_unless_overridden() {
    let Some(lua) = lua_modules() else { return };
    // A server-level rewrite_by_lua (like Kong's) that refuses requests without X-Allowed:
    // the introspection subrequest has a fresh header list, so it is refused too unless the
    // introspection location has its own (empty) Lua blocks.
    let gate = r#"rewrite_by_lua_block {
            if ngx.var.http_x_allowed ~= "yes" then
                return ngx.exit(ngx.HTTP_FORBIDDEN)
            end
        }"#;
    for own_blocks in [false, true] {
        let ids = IdServer::start(IdConfig::default()).unwrap();
        let echo = EchoServer::start().unwrap();
        let introspect = if own_blocks {
            "rewrite_by_lua_block { }\naccess_by_lua_block { }"
        } else {
            ""
        };
        let server = format!(
            "{gate}\n{}\n{}",
            api_location(echo.port(), ""),
            introspection_location(ids.port(), introspect)
        );
        let nginx = Nginx::start_after(&lua, 2, "", &server, "");
        let token = ids.issue("read", 300);
        let get = |allowed: &str| {
            http::request(
                nginx.port,
                "GET",
                "/",
                &[
                    ("Authorization", &format!("Bearer {token}")),
                    ("X-Allowed", allowed),
                ],
                None,
            )
            .status
        };
        assert_eq!(get("no"), 403, "the client's request is refused by Lua");
        assert_eq!(ids.introspections(), 0);
        if own_blocks {
            assert_eq!(get("yes"), 200);
            assert_eq!(ids.introspections(), 1);
        } else {
            // Lua refuses the subrequest: the module sees its identity server fail.
            assert_eq!(get("yes"), 502);
            assert_eq!(ids.introspections(), 0);
        }
        nginx.assert_clean_log();
    }
}

/// The first line of the fenced blocks of docs/openresty.md that are whole configurations
/// needing lua-nginx-module (tests/examples.rs checks the ones without Lua).
const COMPLETE_WITH_LUA: &str = "# complete configuration, with lua-nginx-module";

#[test]
fn the_openresty_example_passes_nginx_t_with_the_lua_module() {
    let Some(lua) = lua_modules() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/openresty.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in page.lines() {
        match (&mut current, line.trim_start().starts_with("```")) {
            (None, true) if line.trim() == "```nginx" => current = Some(String::new()),
            (Some(_), true) => blocks.push(current.take().unwrap()),
            (Some(text), false) => {
                text.push_str(line);
                text.push('\n');
            }
            _ => {}
        }
    }
    blocks.retain(|b| b.lines().next() == Some(COMPLETE_WITH_LUA));
    assert_eq!(blocks.len(), 1, "one example marked `{COMPLETE_WITH_LUA}`");
    let dir = std::env::temp_dir().join(format!("phantom-lua-example-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let d = dir.display();
    let conf = blocks[0]
        .replace(
            "load_module modules/ngx_http_phantom_token_module.so;",
            &format!(
                "{lua}\nload_module {};\npid {d}/nginx.pid;",
                module_path().display()
            ),
        )
        .replacen(
            "http {",
            &format!(
                "http {{\n    client_body_temp_path {d}/cb; proxy_temp_path {d}/px; \
                 fastcgi_temp_path {d}/fc; uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;\n    \
                 access_log {d}/access.log;"
            ),
            1,
        );
    std::fs::write(dir.join("nginx.conf"), &conf).unwrap();
    let (ok, out) = test_config_file(&dir, &dir.join("nginx.conf"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        ok,
        "docs/openresty.md's example fails nginx -t:\n{out}\n{conf}"
    );
    assert!(out.contains("cannot remove \"$api_token\""), "{out}");
}
