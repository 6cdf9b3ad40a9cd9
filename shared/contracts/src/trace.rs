//! The W3C trace context (`traceparent`) every event carries in its metadata, so the spans of one
//! order link up across functions, the bus and the queues.
//!
//! A flow's trace starts where the flow does: an API takes the X-Ray trace id Lambda gives the
//! invocation (`Tracing: Active`; X-Ray ids and W3C trace ids are the same 128 bits), or makes a new
//! one. Each event's `traceparent` names the span that published it; a consumer's handling of an
//! event is a child span of that, with an id derived from the event and the consumer (so a
//! redelivery is the same span), and what the handler publishes names the handling span as its
//! parent ([`crate::Envelope::caused_by`] copies the cause's context, which the harness has set to the
//! handling span). An event without a valid context (an older producer, a hand-made event) gets one
//! derived from its correlation id, so every event of one flow still shares one trace id.
//!
//! A caller's own `traceparent` header is not trusted: the trace id and the sampled flag are
//! ours to choose, not a client's.

use std::fmt;

use uuid::Uuid;

/// One position in a trace: the trace, the span that is the parent of what comes next, and whether
/// the trace is sampled (recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace: 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// The parent span: 8 bytes, never all zero.
    pub span_id: [u8; 8],
    /// Whether the trace is recorded (the W3C flag 01).
    pub sampled: bool,
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes` into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; 2 * bytes.len()];
    hex_into(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// The value of one lowercase hex digit.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Lowercase hex of exactly `N` bytes, not all zero.
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    (out != [0u8; N]).then_some(out)
}

fn first<const N: usize>(id: Uuid) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&id.as_bytes()[..N]);
    out
}

impl TraceContext {
    /// Reads a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None` if it is not one (then
    /// the trace restarts, as the W3C recommendation says). Versions after 00 are read by their
    /// first four fields.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let version = parts.next()?;
        let (trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?);
        let lower_hex = |t: &str| t.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        if version.len() != 2 || !lower_hex(version) || version == "ff" {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if flags.len() != 2 || !lower_hex(flags) {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self { trace_id: unhex(trace_id)?, span_id: unhex(span_id)?, sampled: flags & 1 == 1 })
    }

    /// Reads an X-Ray trace header (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`,
    /// Lambda's `_X_AMZN_TRACE_ID`): its root is the trace id, its parent the span.
    pub fn from_xray(header: &str) -> Option<Self> {
        let (mut root, mut parent, mut sampled) = (None, None, false);
        for field in header.split(';') {
            match field.trim().split_once('=') {
                Some(("Root", value)) => root = Some(value),
                Some(("Parent", value)) => parent = Some(value),
                Some(("Sampled", value)) => sampled = value == "1",
                _ => {}
            }
        }
        let root = root?.strip_prefix("1-")?;
        let (epoch, unique) = root.split_once('-')?;
        if epoch.len() != 8 {
            return None;
        }
        Some(Self { trace_id: unhex(&format!("{epoch}{unique}"))?, span_id: unhex(parent?)?, sampled })
    }

    /// A new trace, sampled, its id random but for its first four bytes, which are the time in
    /// epoch seconds, as X-Ray's trace ids have them (X-Ray takes a W3C trace id of that shape).
    pub fn new_root() -> Self {
        let mut trace_id: [u8; 16] = first(Uuid::new_v4());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        trace_id[..4].copy_from_slice(&(now.as_secs() as u32).to_be_bytes());
        let mut span_id: [u8; 8] = first(Uuid::new_v4());
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        Self { trace_id, span_id, sampled: true }
    }

    /// The trace every event of the flow `correlation_id` shares when none was carried, with the
    /// span named by `event_id` as parent: the same again on every delivery.
    pub fn derived(correlation_id: &str, event_id: &Uuid) -> Self {
        let trace = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("orderflow-trace/{correlation_id}").as_bytes());
        Self { trace_id: first(trace), span_id: first(*event_id), sampled: true }
    }

    /// A child span of this one, its id derived from `event_id` and `name` (a consumer handling that
    /// event): the same id on every delivery of the event to that consumer.
    pub fn child(&self, event_id: &Uuid, name: &str) -> Self {
        // FNV-1a over the event id and the name: stable everywhere, and cheap on the harness's
        // path (a span id need not be unguessable, only distinct).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in event_id.as_bytes().iter().chain(name.as_bytes()) {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        Self { span_id: hash.max(1).to_be_bytes(), ..*self }
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id, 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }

    /// The X-Ray form, for EventBridge's `TraceHeader`, if X-Ray would take this trace id: its
    /// first four bytes are epoch seconds within X-Ray's 30 days before `now` (or up to 5 minutes
    /// after, for clocks apart). A derived trace id (an event from a producer that carried none) is
    /// not one: such an event travels without a header, and only its envelope links it.
    pub fn xray_header(&self, now: std::time::SystemTime) -> Option<String> {
        let now = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        let started =
            u64::from(u32::from_be_bytes([self.trace_id[0], self.trace_id[1], self.trace_id[2], self.trace_id[3]]));
        (started + 30 * 86_400 >= now && started <= now + 300).then(|| self.to_xray())
    }

    /// The X-Ray form (`Root=1-<8>-<24>;Parent=<16>;Sampled=<0|1>`): with it, the bus hands the
    /// trace on to its targets, and X-Ray links the consumers' invocations to the trace.
    pub fn to_xray(&self) -> String {
        let trace = self.trace_id_hex();
        format!(
            "Root=1-{}-{};Parent={};Sampled={}",
            &trace[..8],
            &trace[8..],
            self.span_id_hex(),
            u8::from(self.sampled)
        )
    }
}

/// The W3C `traceparent` form.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `00-<32 hex>-<16 hex>-<2 hex>`, written once: every record's handling writes one.
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&self.trace_id, &mut out[3..35]);
        hex_into(&self.span_id, &mut out[36..52]);
        out[54] = if self.sampled { b'1' } else { b'0' };
        f.write_str(std::str::from_utf8(&out).expect("hex digits are ASCII"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W3C: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_and_writes_the_w3c_form() {
        let t = TraceContext::parse(W3C).unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id_hex(), "00f067aa0ba902b7");
        assert!(t.sampled);
        assert_eq!(t.to_string(), W3C);
        assert!(!TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap().sampled);
        // A later version is read by its first four fields.
        assert!(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }

    #[test]
    fn refuses_what_is_not_a_traceparent() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_xray_header_is_the_same_trace() {
        let t = TraceContext::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
            .unwrap();
        assert_eq!(t.to_string(), "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01");
        assert_eq!(t.to_xray(), "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1");
        assert_eq!(TraceContext::from_xray(&t.to_xray()), Some(t));
        assert_eq!(TraceContext::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793"), None, "no parent");
        assert_eq!(TraceContext::from_xray("Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"), None);
    }

    #[test]
    fn a_child_keeps_the_trace_and_is_the_same_span_on_every_delivery() {
        let root = TraceContext::parse(W3C).unwrap();
        let event = Uuid::new_v4();
        let child = root.child(&event, "billing");
        assert_eq!((child.trace_id, child.sampled), (root.trace_id, root.sampled));
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(child, root.child(&event, "billing"), "a redelivery is the same span");
        assert_ne!(child.span_id, root.child(&event, "email").span_id, "each consumer its own span");
    }

    #[test]
    fn a_new_trace_is_one_xray_takes_and_a_derived_or_stale_one_gets_no_header() {
        let now = std::time::SystemTime::now();
        let root = TraceContext::new_root();
        assert!(root.xray_header(now).is_some(), "{root}");
        assert_ne!(root.trace_id, TraceContext::new_root().trace_id);
        let month = std::time::Duration::from_secs(31 * 86_400);
        assert_eq!(root.xray_header(now + month), None, "over X-Ray's 30 days");
        assert_eq!(root.xray_header(now - std::time::Duration::from_secs(3600)), None, "from the future");
        assert_eq!(TraceContext::from_xray(&root.to_xray()), Some(root));
        // Derived from a correlation id: its first bytes are a hash, not a time X-Ray would take
        // (but for a chance of 30 days in 136 years).
        let derived = TraceContext::derived("corr-1", &Uuid::new_v4());
        assert_eq!(derived.xray_header(now), None);
    }

    #[test]
    fn a_flow_without_a_context_still_shares_one_trace() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let first = TraceContext::derived("corr-1", &a);
        assert_eq!(first.trace_id, TraceContext::derived("corr-1", &b).trace_id);
        assert_ne!(first.trace_id, TraceContext::derived("corr-2", &a).trace_id);
        assert_eq!(first.span_id, TraceContext::derived("corr-1", &a).span_id);
    }
}
