//! Server addresses as written in the configuration.

/// The host part of an address's name (`host:port`, `[v6]:port`, a bare host): what a TLS
/// server's certificate must name unless the configuration says otherwise.
pub fn host_of(name: &str) -> &str {
    if let Some(rest) = name.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match name.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_of_each_form() {
        assert_eq!(host_of("redis.example.com:6380"), "redis.example.com");
        assert_eq!(host_of("127.0.0.1:6379"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6379"), "::1");
        assert_eq!(host_of("[::1]"), "::1");
        assert_eq!(host_of("unix:/run/redis.sock"), "unix:/run/redis.sock");
        assert_eq!(host_of("cache"), "cache");
        assert_eq!(host_of("cache:"), "cache:");
        assert_eq!(host_of(""), "");
    }
}
