//! Turning payloads and headers into JSON text that jsonb will accept.
//!
//! Checked before any round trip, so a bad payload costs nothing and loses
//! nothing: the caller gets a Payload error naming the problem and the fix.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The payload rules (docs/payloads.md), the same in Python (`_payload.py`)
/// and in the server (`sql/functions/json_check.sql`), so that what one
/// client stores every client reads: arrays and objects nest at most
/// `MAX_DEPTH` levels (serde_json stops at 128, Python near its recursion
/// limit), and every number is finite as a 64-bit float (at most 309
/// integer digits; Python refuses integers over 4,300 digits and reads
/// `1e5000` as infinity).
pub const MAX_DEPTH: usize = 64;
/// Characters from which a number token may be out of range (1e308 has 309 digits).
const MAX_SAFE_DIGITS: usize = 308;

/// What in the JSON `text` breaks the payload rules ("is nested ...", "holds
/// the number ..."), or None. One pass over the bytes, no allocation.
pub(crate) fn rule_problem(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(format!(
                        "is nested deeper than {MAX_DEPTH} levels (the limit, so that every client can decode it)"
                    ));
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                // Without an exponent, a number under 309 characters is in range.
                let mut plain = true;
                i += 1;
                while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    plain &= !matches!(bytes[i], b'e' | b'E');
                    i += 1;
                }
                let number = &text[start..i];
                if (!plain || number.len() > MAX_SAFE_DIGITS)
                    && !number.parse::<f64>().map(f64::is_finite).unwrap_or(true)
                {
                    return Some(too_large(number));
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn too_large(number: &str) -> String {
    let shown = if number.len() <= 20 {
        number.to_string()
    } else {
        format!("{}... ({} characters)", &number[..12], number.len())
    };
    format!(
        "holds the number {shown}, beyond the range of a 64-bit float (the limit, so that every \
         client reads it as a finite number); send it as a string"
    )
}

/// Decode a json/jsonb column's text, checking the payload rules first:
/// the reason when it breaks one or does not decode (a row written by other
/// means than pgqrs's functions), so a dequeue can dead-letter that row alone.
pub(crate) fn decode(text: &str) -> std::result::Result<Value, String> {
    if let Some(problem) = rule_problem(text) {
        return Err(problem);
    }
    serde_json::from_str(text).map_err(|e| format!("cannot be decoded ({e})"))
}

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
    if let Some(problem) = rule_problem(&text) {
        return Err(Error::payload(format!("{what} {problem}")));
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
    fn enforces_the_depth_and_number_rules() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(rule_problem(&nested(64)).is_none());
        assert!(rule_problem(&nested(65)).unwrap().contains("nested deeper than 64"));
        // Brackets inside strings do not count.
        assert!(rule_problem(&format!("{{\"s\":\"{}\\\"\"}}", "[".repeat(100))).is_none());
        assert!(rule_problem(&format!("[{}]", "9".repeat(308))).is_none());
        assert!(rule_problem("[1e308, -1.7976931348623157e308]").is_none());
        assert!(rule_problem(&format!("[{}]", "9".repeat(400))).unwrap().contains("64-bit float"));
        assert!(rule_problem("{\"n\": 1e5000}").unwrap().contains("1e5000"));
        assert!(rule_problem("[-2e308]").is_some());
        let v: Value = serde_json::from_str(&format!("[{}]", "1".repeat(400))).unwrap();
        assert_eq!(encode(&v, "payload", 100_000).unwrap_err().kind(), ErrorKind::Payload);
        assert!(decode(&nested(200)).unwrap_err().contains("nested"));
        assert_eq!(decode("[1,{\"a\":2}]").unwrap(), json!([1, {"a": 2}]));
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
