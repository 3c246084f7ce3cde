//! Turning payloads and headers into JSON text that jsonb will accept.
//!
//! Checked before any round trip, so a bad payload costs nothing and loses
//! nothing: the caller gets a Payload error naming the problem and the fix.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// JSON text for `value` (`what` names it in errors: payload, result, error...).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, what: &str, max_bytes: usize) -> Result<String> {
    let text = serde_json::to_string(value).map_err(|e| {
        Error::payload(format!(
            "{what} cannot be encoded as JSON ({e}); use values that serde_json can serialize \
             (maps need string keys)"
        ))
    })?;
    check(text, what, max_bytes)
}

/// JSON text for a headers object, or None when there are none.
pub(crate) fn encode_headers(headers: Option<&Value>, max_bytes: usize) -> Result<Option<String>> {
    match headers {
        None => Ok(None),
        Some(h @ Value::Object(_)) => Ok(Some(encode(h, "headers", max_bytes)?)),
        Some(other) => {
            Err(Error::payload(format!("headers must be a JSON object with string keys, got {other}")))
        }
    }
}

fn check(text: String, what: &str, max_bytes: usize) -> Result<String> {
    if text.len() > max_bytes {
        return Err(Error::payload(format!(
            "{what} is {} bytes of JSON, over the limit of {max_bytes} bytes; store large \
             data elsewhere and enqueue a reference, or raise Config::with_max_payload_bytes",
            text.len()
        )));
    }
    if has_nul_escape(&text) {
        return Err(Error::payload(format!(
            "{what} contains a NUL character (\\u0000), which PostgreSQL's jsonb \
             cannot store; remove it or encode the data (e.g. base64)"
        )));
    }
    Ok(text)
}

/// Does the JSON text hold a `\u0000` escape (not an escaped backslash followed by "u0000")?
fn has_nul_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::json;

    #[test]
    fn encodes_unicode_as_is_and_keeps_big_numbers() {
        let v: Value =
            serde_json::from_str(r#"{"s":"héllo ✓ 😀","n":123456789012345678901234567890}"#).unwrap();
        let text = encode(&v, "payload", 1000).unwrap();
        assert!(text.contains("héllo ✓ 😀"));
        assert!(text.contains("123456789012345678901234567890"));
    }

    #[test]
    fn refuses_nul_but_not_escaped_backslash() {
        let err = encode(&json!({"a": "x\u{0}y"}), "payload", 1000).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Payload);
        assert!(encode(&json!({"a": "x\\u0000y"}), "payload", 1000).is_ok());
        assert!(encode(&json!({"a": "x\\\u{0}"}), "payload", 1000).is_err());
    }

    #[test]
    fn refuses_oversized_and_non_object_headers() {
        let err = encode(&json!("x".repeat(20)), "payload", 10).unwrap_err();
        assert!(err.to_string().contains("over the limit of 10 bytes"), "{err}");
        assert!(encode_headers(Some(&json!([1])), 100).is_err());
        assert_eq!(encode_headers(Some(&json!({"k": 1})), 100).unwrap().unwrap(), r#"{"k":1}"#);
        assert!(encode_headers(None, 100).unwrap().is_none());
    }
}
