//! Passes nginx-sys' detected features, OS and version to the compiler as cfgs,
//! and the nginx build directory to the integration tests.

fn main() {
    pass_list(
        "DEP_NGINX_FEATURES",
        "DEP_NGINX_FEATURES_CHECK",
        "ngx_feature",
    );
    pass_list("DEP_NGINX_OS", "DEP_NGINX_OS_CHECK", "ngx_os");
    version_cfgs();
    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    if let Ok(dir) = std::env::var("DEP_NGINX_BUILD_DIR") {
        println!("cargo::rustc-env=DEP_NGINX_BUILD_DIR={dir}");
    }
}

/// Emits `cfg(name = "value")` for each comma separated value of `var`.
fn pass_list(var: &str, check: &str, name: &str) {
    println!("cargo::rerun-if-env-changed={check}");
    let allowed = std::env::var(check).unwrap_or_else(|_| "any()".into());
    println!("cargo::rustc-check-cfg=cfg({name}, values({allowed}))");
    println!("cargo::rerun-if-env-changed={var}");
    if let Ok(values) = std::env::var(var) {
        for v in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={name}=\"{v}\"");
        }
    }
}

/// nginx API differences handled in the code: `ngx_table_elt_t.next` (1.23.0).
fn version_cfgs() {
    const CHECKS: &[(u64, &str)] = &[(1_023_000, "nginx1_23_0"), (1_025_001, "nginx1_25_1")];
    for (_, name) in CHECKS {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    let Ok(version) = std::env::var("DEP_NGINX_VERSION_NUMBER") else {
        return;
    };
    let version: u64 = version.parse().unwrap_or(0);
    for (min, name) in CHECKS {
        if version >= *min {
            println!("cargo::rustc-cfg={name}");
        }
    }
}
