//! `application/x-www-form-urlencoded` encoding of the introspection request body.

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Length of `input` after percent-encoding.
pub fn encoded_len(input: &[u8]) -> usize {
    input
        .iter()
        .map(|c| if unreserved(*c) { 1 } else { 3 })
        .sum()
}

/// Percent-encodes `input` into `dst`, which must be exactly `encoded_len(input)` long.
/// Returns `false` (writing nothing) when the length differs.
pub fn encode_into(dst: &mut [u8], input: &[u8]) -> bool {
    if dst.len() != encoded_len(input) {
        return false;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = dst.iter_mut();
    for &c in input {
        let bytes: &[u8] = if unreserved(c) {
            &[c]
        } else {
            &[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]
        };
        for b in bytes {
            if let Some(slot) = out.next() {
                *slot = *b;
            }
        }
    }
    true
}

/// `token=<percent-encoded token>`.
pub fn introspection_body(token: &[u8]) -> Vec<u8> {
    let mut body = b"token=".to_vec();
    let start = body.len();
    body.resize(start + encoded_len(token), 0);
    encode_into(&mut body[start..], token);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_bytes() {
        assert_eq!(introspection_body(b"a+b/c=="), b"token=a%2Bb%2Fc%3D%3D");
        assert_eq!(introspection_body(b"x-y.z_~"), b"token=x-y.z_~");
        assert_eq!(introspection_body(b" \0\xff"), b"token=%20%00%FF");
        assert_eq!(introspection_body(b""), b"token=");
    }

    #[test]
    fn rejects_wrong_destination_length() {
        let mut dst = [0u8; 2];
        assert!(!encode_into(&mut dst, b"+"));
        assert_eq!(dst, [0, 0]);
    }
}
