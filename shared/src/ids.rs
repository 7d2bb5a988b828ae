//! Random identifiers and small time helpers.

use base64::Engine;

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The OS generator failing is not something a request can cause; without it no key is safe.
    getrandom::fill(&mut out).unwrap_or_else(|e| panic!("operating system RNG unavailable: {e}"));
    out
}

pub fn random_vec(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    getrandom::fill(&mut buf).unwrap_or_else(|e| panic!("operating system RNG unavailable: {e}"));
    buf
}

pub fn random_hex(bytes: usize) -> String {
    hex(&random_vec(bytes))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .map(|nibble| char::from(b"0123456789abcdef"[nibble as usize]))
        .collect()
}

/// URL-safe id with 128 random bits (22 characters, `A-Z a-z 0-9 - _`), never starting with
/// `-` or `_`: an id is a command-line argument too (`skye versions ID`), and one in 64 would
/// otherwise read as an option.
pub fn new_id() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<16>());
        if id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return id;
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 rendering of Unix seconds (UTC).
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_look_like_options() {
        for _ in 0..10_000 {
            let id = new_id();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with(['-', '_']), "{id}");
        }
        assert_eq!(hex(&[0x00, 0x7f, 0xa5, 0xff]), "007fa5ff");
    }
}
