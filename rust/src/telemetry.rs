//! Traces for the producer and the worker (features `tracing` and `otel`, off
//! by default; docs/telemetry.md).
//!
//! With `tracing`, an enqueue is a `send {queue}` span (a batch also gets one
//! `create {queue}` span per message) and each handler call a
//! `process {queue}` span, attributed per the OpenTelemetry messaging
//! conventions (`otel.name`/`otel.kind` for tracing-opentelemetry). With
//! `otel`, each message's headers carry its creation span's W3C
//! `traceparent` (and `tracestate`), the format Python's producer writes, and
//! the worker makes that context the parent of its process span (and links
//! it), so a trace crosses languages in both directions.

use tracing::field::Empty;

use crate::error::Result;

/// The spans of one enqueue call.
pub(crate) struct Publish {
    pub(crate) send: tracing::Span,
    creates: Vec<tracing::Span>,
}

impl Publish {
    /// Start the spans and (feature `otel`) write each message's context into
    /// its headers text (one per message).
    pub(crate) fn start(queue: &str, headers: &mut [Option<String>], max_bytes: usize) -> Result<Publish> {
        let n = headers.len();
        let name = format!("send {queue}");
        let send = if n == 1 {
            tracing::info_span!(
                "send",
                otel.name = %name,
                otel.kind = "producer",
                messaging.system = "pgqrs",
                messaging.destination.name = %queue,
                messaging.operation.r#type = "send",
                messaging.operation.name = "send",
                messaging.message.id = Empty,
                otel.status_code = Empty,
                error.r#type = Empty,
            )
        } else {
            tracing::info_span!(
                "send",
                otel.name = %name,
                otel.kind = "client",
                messaging.system = "pgqrs",
                messaging.destination.name = %queue,
                messaging.operation.r#type = "send",
                messaging.operation.name = "send",
                messaging.batch.message_count = n,
                otel.status_code = Empty,
                error.r#type = Empty,
            )
        };
        let creates: Vec<tracing::Span> = if n == 1 {
            Vec::new()
        } else {
            let name = format!("create {queue}");
            (0..n)
                .map(|_| {
                    tracing::info_span!(
                        "create",
                        otel.name = %name,
                        otel.kind = "producer",
                        messaging.system = "pgqrs",
                        messaging.destination.name = %queue,
                        messaging.operation.r#type = "create",
                        messaging.operation.name = "create",
                        messaging.message.id = Empty,
                    )
                })
                .collect()
        };
        #[cfg(feature = "otel")]
        {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let carriers = if creates.is_empty() { std::slice::from_ref(&send) } else { &creates[..] };
            for (header, span) in headers.iter_mut().zip(carriers) {
                *header = otel::inject(header.take(), span, max_bytes)?;
            }
            for span in &creates {
                send.add_link(otel::span_context(span));
            }
        }
        #[cfg(not(feature = "otel"))]
        let _ = (max_bytes, &headers);
        Ok(Publish { send, creates })
    }

    /// Record the ids (or the error) and end the spans.
    pub(crate) fn finish(self, result: &Result<Vec<crate::message::Message>>) {
        match result {
            Ok(messages) => {
                if self.creates.is_empty() {
                    if let Some(m) = messages.first() {
                        self.send.record("messaging.message.id", tracing::field::display(m.id));
                    }
                }
                for (span, m) in self.creates.iter().zip(messages) {
                    span.record("messaging.message.id", tracing::field::display(m.id));
                }
            }
            Err(e) => {
                self.send.record("otel.status_code", "ERROR");
                self.send.record("error.type", tracing::field::debug(e.kind()));
            }
        }
    }
}

/// The span of one handler call; its parent is the message's creation context
/// (feature `otel`), which it also links.
pub(crate) fn process_span(msg: &crate::message::Message) -> tracing::Span {
    let span = tracing::info_span!(
        "process",
        otel.name = %format_args!("process {}", msg.queue),
        otel.kind = "consumer",
        messaging.system = "pgqrs",
        messaging.destination.name = %msg.queue,
        messaging.operation.r#type = "process",
        messaging.operation.name = "process",
        messaging.message.id = %msg.id,
        messaging.pgqrs.attempt = msg.attempts,
        otel.status_code = Empty,
        error.r#type = Empty,
    );
    #[cfg(feature = "otel")]
    if let Some(cx) = otel::extract(&msg.headers) {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let created = cx.span().span_context().clone();
        // Fails only when no OpenTelemetry layer is installed: then nothing records it.
        let _ = span.set_parent(cx);
        span.add_link(created);
    }
    span
}

/// Mark the process span failed with the error's type.
pub(crate) fn record_failure(span: &tracing::Span, kind: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", kind);
}

#[cfg(feature = "otel")]
mod otel {
    use std::str::FromStr;

    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use opentelemetry::Context;
    use serde_json::{Map, Value};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use crate::error::Result;
    use crate::payload::encode_headers;

    pub(super) fn span_context(span: &tracing::Span) -> SpanContext {
        span.context().span().span_context().clone()
    }

    /// `header` (a JSON object's text, or none) with the span's `traceparent`
    /// and `tracestate`. A traceparent the caller set is kept.
    pub(super) fn inject(
        header: Option<String>,
        span: &tracing::Span,
        max_bytes: usize,
    ) -> Result<Option<String>> {
        let sc = span_context(span);
        if !sc.is_valid() {
            return Ok(header); // no OpenTelemetry layer: nothing to carry
        }
        let mut object = match &header {
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => map,
                _ => return Ok(header),
            },
            None => Map::new(),
        };
        if object.contains_key("traceparent") {
            return Ok(header);
        }
        let traceparent = format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8());
        object.insert("traceparent".into(), Value::String(traceparent));
        let state = sc.trace_state().header();
        if !state.is_empty() {
            object.insert("tracestate".into(), Value::String(state));
        }
        encode_headers(Some(&Value::Object(object)), max_bytes)
    }

    /// The remote context in a message's headers (W3C trace context, version 00).
    pub(super) fn extract(headers: &Value) -> Option<Context> {
        let parent = headers.get("traceparent")?.as_str()?;
        let mut parts = parent.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00"
            || parts.next().is_some()
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let state = headers
            .get("tracestate")
            .and_then(Value::as_str)
            .and_then(|s| TraceState::from_str(s).ok())
            .unwrap_or_default();
        let sc = SpanContext::new(trace_id, span_id, TraceFlags::new(flags & 1), true, state);
        sc.is_valid().then(|| Context::new().with_remote_span_context(sc))
    }

    #[cfg(test)]
    mod tests {
        use serde_json::json;

        use super::*;

        #[test]
        fn extract_reads_w3c_traceparent_and_refuses_garbage() {
            let ok = json!({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"});
            let cx = extract(&ok).unwrap();
            let sc = cx.span().span_context().clone();
            assert_eq!(format!("{}", sc.trace_id()), "0af7651916cd43dd8448eb211c80319c");
            assert_eq!(format!("{}", sc.span_id()), "b7ad6b7169203331");
            assert!(sc.is_sampled() && sc.is_remote());
            for bad in [
                json!({}),
                json!({"traceparent": 7}),
                json!({"traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}),
                json!({"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"}),
                json!({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01"}),
            ] {
                assert!(extract(&bad).is_none(), "{bad}");
            }
        }
    }
}
