//! Release hygiene: the version line nginx logs, the changelog entries for this version (the
//! project's and the Debian package's), and the module file name used by every example.

mod support;

use std::fs;
use std::path::Path;

use support::*;

const VERSION_LINE: &str = concat!("ngx_phantom_token ", env!("CARGO_PKG_VERSION"));

fn version_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.ends_with(VERSION_LINE) || l.contains(&format!("{VERSION_LINE} ")))
        .collect()
}

#[test]
fn version_is_logged_once_per_configuration_load() {
    let n = Nginx::start("", "location / { return 204; }");
    assert!(
        n.wait_log(VERSION_LINE),
        "no version line:\n{}",
        n.error_log()
    );
    let log = n.error_log();
    let lines = version_lines(&log);
    assert_eq!(lines.len(), 1, "one line at startup:\n{log}");
    assert!(lines[0].contains("[notice]"), "a notice: {}", lines[0]);

    n.reload();
    let log = n.error_log();
    assert_eq!(version_lines(&log).len(), 2, "one more per reload:\n{log}");
    n.assert_clean_log();
}

#[test]
fn changelog_has_an_entry_for_this_version() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let changelog = fs::read_to_string(root.join("CHANGELOG.md")).unwrap();
    let heading = format!("## [{}]", env!("CARGO_PKG_VERSION"));
    assert!(
        changelog.lines().any(|l| l.starts_with(&heading)),
        "CHANGELOG.md has no `{heading}` section"
    );
    assert!(changelog.contains("## [Unreleased]"));
}

/// The Debian package's changelog (packaging/deb/changelog, `changelog.Debian.gz` in the
/// package) has its top entry for this version: cargo-deb names the package version
/// `<version>-<revision>`.
#[test]
fn debian_changelog_starts_with_this_version() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let changelog = fs::read_to_string(root.join("packaging/deb/changelog")).unwrap();
    let first = changelog.lines().next().unwrap_or_default();
    let want = format!(
        "libnginx-mod-http-phantom-token ({}-",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        first.starts_with(&want),
        "packaging/deb/changelog starts with `{first}`, not `{want}<revision>)`"
    );
}

/// Every `load_module` of an installed module (the examples, the container image, the Debian
/// package, the code blocks of the README and docs/) names the file nginx's convention gives the
/// module.
#[test]
fn examples_load_the_module_under_its_nginx_name() {
    const NAME: &str = "ngx_http_phantom_token_module.so";
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = fs::read_dir(root.join("nginx-conf"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(root.join("Dockerfile"));
    // The Debian package's load_module snippet (scripts/deb.sh).
    files.push(root.join("packaging/deb/mod-http-phantom-token.conf"));
    files.push(root.join("README.md"));
    let mut docs: Vec<_> = fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut seen = 0;
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let markdown = path.extension().is_some_and(|e| e == "md");
        let mut in_code = !markdown;
        for line in text.lines() {
            if markdown && line.starts_with("```") {
                in_code = !in_code;
                continue;
            }
            let line = line.trim_start_matches(['#', ' ']);
            if !in_code || !line.starts_with("load_module ") || line.contains("__MODULE__") {
                continue;
            }
            if line.contains("ngx_curity_http_phantom_token_module.so") {
                continue; // Curity's module, in the migration example
            }
            if line.contains("ndk_http_module.so") || line.contains("ngx_http_lua_module.so") {
                continue; // Debian's Lua module and its NDK, beside this one (docs/openresty.md)
            }
            assert!(
                line.contains(NAME),
                "{}: `{line}` does not load {NAME}",
                path.display()
            );
            seen += 1;
        }
        if path.ends_with("Dockerfile") {
            assert!(
                text.lines()
                    .any(|l| l.contains(NAME) && l.contains("/usr/lib/nginx/modules/")),
                "the image does not install {NAME} into /usr/lib/nginx/modules/"
            );
        }
    }
    assert!(
        seen >= 3,
        "expected load_module lines in the README, nginx-conf/docker.conf and packaging/deb/"
    );
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("\"usr/lib/nginx/modules/{NAME}\"")),
        "the Debian package ([package.metadata.deb] assets) does not install {NAME}"
    );
}
