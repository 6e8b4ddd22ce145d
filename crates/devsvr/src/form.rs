//! `application/x-www-form-urlencoded` bodies, as the token, introspection and revocation
//! endpoints receive them.

use std::collections::HashMap;

/// `application/x-www-form-urlencoded` fields.
pub(crate) fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 2;
            }
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f = form(b"token=a%2Bb%2Fc%3D%3D&x=1+2&bad=%zz&end=%4");
        assert_eq!(f["token"], "a+b/c==");
        assert_eq!(f["x"], "1 2");
        assert_eq!(f["bad"], "%zz");
        assert_eq!(f["end"], "%4");
    }
}
