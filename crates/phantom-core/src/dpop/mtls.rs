//! RFC 8705 certificate binding: `x5t#S256` of the client certificate, taken from the TLS layer
//! (DER) or from a header set by a trusted TLS terminator.

use super::{b64url, sha256};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// Standard base64, padding optional (PEM bodies and RFC 9440 byte sequences).
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Longest header value looked at (a certificate chain of several certificates fits).
pub const MAX_CERT_HEADER_LEN: usize = 64 * 1024;

/// `x5t#S256` = base64url(SHA-256(DER)) without padding (RFC 8705 §3.1).
pub fn x5t_s256(der: &[u8]) -> String {
    b64url(&sha256(der))
}

/// The DER of the first certificate in a header value:
///
/// * PEM, raw (`$ssl_client_raw_cert`, also tab-indented `$ssl_client_cert`) or URL-encoded
///   (nginx `$ssl_client_escaped_cert`, AWS ALB `X-Amzn-Mtls-Clientcert[-Leaf]`): percent-
///   decoded **without** turning `+` into a space, then the first `CERTIFICATE` block;
/// * RFC 9440 `Client-Cert: :<base64 DER>:`.
///
/// The result is one complete DER SEQUENCE; anything else gives `None`.
pub fn cert_der_from_header(value: &[u8]) -> Option<Vec<u8>> {
    if value.len() > MAX_CERT_HEADER_LEN {
        return None;
    }
    let value = trim(value);
    let der = if let Some(inner) = value.strip_prefix(b":").and_then(|v| v.strip_suffix(b":")) {
        STANDARD_ANY_PAD.decode(inner).ok()?
    } else {
        pem_first_cert(&percent_decode(value)?)?
    };
    is_der_sequence(&der).then_some(der)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !first.is_ascii_whitespace() {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !last.is_ascii_whitespace() {
            break;
        }
        v = rest;
    }
    v
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `%XX` → byte; `+` stays `+` (base64). A stray `%` makes the value invalid.
fn percent_decode(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(v.len());
    let mut it = v.iter();
    while let Some(&c) = it.next() {
        if c == b'%' {
            let hi = hex(*it.next()?)?;
            let lo = hex(*it.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn pem_first_cert(text: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let start = find(text, BEGIN)? + BEGIN.len();
    let body = text.get(start..)?;
    let body = body.get(..find(body, END)?)?;
    let b64: Vec<u8> = body
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if b64.is_empty() {
        return None;
    }
    STANDARD_ANY_PAD.decode(&b64).ok()
}

/// One DER SEQUENCE (tag 0x30, definite minimal length) filling the buffer exactly.
fn is_der_sequence(der: &[u8]) -> bool {
    let [0x30, len0, rest @ ..] = der else {
        return false;
    };
    let (len, body) = match *len0 {
        l @ 0..=0x7f => (usize::from(l), rest),
        0x81 => match rest {
            [l, body @ ..] if *l >= 0x80 => (usize::from(*l), body),
            _ => return false,
        },
        0x82 => match rest {
            [a, b, body @ ..] if *a != 0 => (usize::from(*a) << 8 | usize::from(*b), body),
            _ => return false,
        },
        0x83 => match rest {
            [a, b, c, body @ ..] if *a != 0 => (
                usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c),
                body,
            ),
            _ => return false,
        },
        _ => return false,
    };
    len == body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8705 Appendix A.
    const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBBjCBrAIBAjAKBggqhkjOPQQDAjAPMQ0wCwYDVQQDDARtdGxzMB4XDTE4MTAx
ODEyMzcwOVoXDTIyMDUwMjEyMzcwOVowDzENMAsGA1UEAwwEbXRsczBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABNcnyxwqV6hY8QnhxxzFQ03C7HKW9OylMbnQZjjJ
/Au08/coZwxS7LfA4vOLS9WuneIXhbGGWvsDSb0tH6IxLm8wCgYIKoZIzj0EAwID
SQAwRgIhAP0RC1E+vwJD/D1AGHGzuri+hlV/PpQEKTWUVeORWz83AiEA5x2eXZOV
bUlJSGQgjwD5vaUaKlLR50Q2DmFfQj1L+SY=
-----END CERTIFICATE-----
";
    const X5T: &str = "A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0";

    /// Component-style URL encoding like nginx's `ngx_escape_uri` / ALB (`+`, `/`, `=` kept or
    /// encoded as the caller chooses).
    fn escape(s: &str, keep: &[u8]) -> String {
        s.bytes()
            .map(|c| {
                if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) || keep.contains(&c) {
                    char::from(c).to_string()
                } else {
                    format!("%{c:02X}")
                }
            })
            .collect()
    }

    fn body_b64() -> String {
        PEM.lines().filter(|l| !l.starts_with("-----")).collect()
    }

    #[test]
    fn rfc8705_vector_from_raw_pem() {
        let der = cert_der_from_header(PEM.as_bytes()).unwrap();
        assert_eq!(der.len(), 266);
        assert_eq!(x5t_s256(&der), X5T);
        // $ssl_client_cert style (tab-indented continuation lines), CRLF, leading blanks.
        let tabbed = PEM.replace('\n', "\n\t");
        assert_eq!(
            x5t_s256(&cert_der_from_header(tabbed.as_bytes()).unwrap()),
            X5T
        );
        let crlf = format!("  {}", PEM.replace('\n', "\r\n"));
        assert_eq!(
            x5t_s256(&cert_der_from_header(crlf.as_bytes()).unwrap()),
            X5T
        );
    }

    #[test]
    fn rfc8705_vector_from_url_encoded_pem() {
        // nginx $ssl_client_escaped_cert: everything but unreserved characters encoded.
        let nginx = escape(PEM, b"");
        assert!(nginx.contains("%2B") && nginx.contains("%0A"));
        assert_eq!(
            x5t_s256(&cert_der_from_header(nginx.as_bytes()).unwrap()),
            X5T
        );
        // AWS ALB: `+`, `=`, `/` left as they are; `+` must not become a space.
        let alb = escape(PEM, b"+=/");
        assert!(alb.contains('+'));
        assert_eq!(
            x5t_s256(&cert_der_from_header(alb.as_bytes()).unwrap()),
            X5T
        );
        // A chain: the first certificate counts.
        let chain = escape(&format!("{PEM}{}", PEM.replace("MIIB", "MIIC")), b"+=/");
        assert_eq!(
            x5t_s256(&cert_der_from_header(chain.as_bytes()).unwrap()),
            X5T
        );
    }

    #[test]
    fn rfc8705_vector_from_rfc9440_byte_sequence() {
        let v = format!(":{}:", body_b64());
        assert_eq!(x5t_s256(&cert_der_from_header(v.as_bytes()).unwrap()), X5T);
        let unpadded = format!(":{}:", body_b64().trim_end_matches('='));
        assert_eq!(
            x5t_s256(&cert_der_from_header(unpadded.as_bytes()).unwrap()),
            X5T
        );
    }

    #[test]
    fn refuses_garbage() {
        for v in [
            &b""[..],
            b"::",
            b":AAAA:",
            b":not base64:",
            b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
            b"-----BEGIN CERTIFICATE-----\nMIIB",
            b"-----END CERTIFICATE-----MIIB-----BEGIN CERTIFICATE-----",
            b"%",
            b"%4",
            b"%zz",
            b"MIIBBjCBrAIBAjAKBggqhkjOPQQDAjAPMQ0wCwYDVQQDDARtdGxz",
        ] {
            assert_eq!(
                cert_der_from_header(v),
                None,
                "{}",
                String::from_utf8_lossy(v)
            );
        }
        // `+` turned into a space by a form decoder breaks the base64.
        let broken = PEM.replace('+', " ");
        assert_ne!(
            cert_der_from_header(broken.as_bytes()).map(|d| x5t_s256(&d)),
            Some(X5T.to_string())
        );
        // Trailing bytes after the SEQUENCE.
        let mut der = cert_der_from_header(PEM.as_bytes()).unwrap();
        der.push(0);
        let v = format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert_eq!(cert_der_from_header(v.as_bytes()), None);
        assert!(cert_der_from_header(&vec![b'a'; MAX_CERT_HEADER_LEN + 1]).is_none());
    }

    #[test]
    fn der_sequence_lengths() {
        assert!(is_der_sequence(&[0x30, 0]));
        assert!(is_der_sequence(&[0x30, 1, 5]));
        assert!(!is_der_sequence(&[0x30, 2, 5]));
        assert!(!is_der_sequence(&[0x31, 0]));
        assert!(!is_der_sequence(&[0x30, 0x81, 5, 1, 2, 3, 4, 5])); // not minimal
        let mut long = vec![0x30, 0x81, 0x80];
        long.extend_from_slice(&[0; 0x80]);
        assert!(is_der_sequence(&long));
        assert!(!is_der_sequence(&[0x30, 0x84, 0, 0, 0, 0]));
        assert!(!is_der_sequence(&[0x30]));
    }
}
