//! W3C Trace Context (`traceparent`, `tracestate`): which client values may be passed on to
//! the identity server. Malformed values are dropped, never repaired.

fn is_lower_hex(s: &[u8]) -> bool {
    s.iter()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

fn all_zero(s: &[u8]) -> bool {
    s.iter().all(|c| *c == b'0')
}

/// `version-trace_id-parent_id-flags` (W3C Trace Context, section 3.2): version `00` with
/// exactly these four fields, or a later version (not `ff`) with more after a `-`.
pub fn traceparent_ok(v: &[u8]) -> bool {
    if v.len() < 55 {
        return false;
    }
    let (version, trace, parent, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    let dashes = v[2] == b'-' && v[35] == b'-' && v[52] == b'-';
    let fields = [version, trace, parent, flags]
        .iter()
        .all(|f| is_lower_hex(f));
    if !dashes || !fields || version == b"ff" || all_zero(trace) || all_zero(parent) {
        return false;
    }
    match version {
        b"00" => v.len() == 55,
        _ => v.len() == 55 || v[55] == b'-',
    }
}

/// At most 32 `key=value` members of printable ASCII, 512 bytes in all (section 3.3).
pub fn tracestate_ok(v: &[u8]) -> bool {
    if v.is_empty() || v.len() > 512 || !v.iter().all(|c| (0x20..0x7f).contains(c)) {
        return false;
    }
    let members: Vec<&[u8]> = v
        .split(|c| *c == b',')
        .map(|m| m.trim_ascii())
        .filter(|m| !m.is_empty())
        .collect();
    !members.is_empty()
        && members.len() <= 32
        && members
            .iter()
            .all(|m| match m.iter().position(|c| *c == b'=') {
                Some(i) => i > 0 && i + 1 < m.len() && !m[i + 1..].contains(&b'='),
                None => false,
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn accepts_the_spec_example() {
        assert!(traceparent_ok(GOOD));
        assert!(traceparent_ok(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
    }

    #[test]
    fn rejects_malformed_traceparents() {
        for bad in [
            &b""[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX: y",
        ] {
            assert!(!traceparent_ok(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn tracestate_members() {
        assert!(tracestate_ok(b"congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"));
        assert!(!tracestate_ok(b""));
        assert!(!tracestate_ok(b"novalue"));
        assert!(!tracestate_ok(b"a=1\r\nX-Injected: 1"));
        assert!(!tracestate_ok(&[b'a'; 600]));
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(!tracestate_ok(many.join(",").as_bytes()));
    }
}
