//! DNS messages in and out: the only module that knows hickory's message types
//! besides `upstream` and `cache`, which store its records.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

/// The EDNS option code of Extended DNS Errors (RFC 8914).
pub(crate) const EDE_OPTION: u16 = 15;

/// Largest UDP answer we send when the client offers more (the DNS flag day value).
pub(crate) const MAX_UDP: u16 = 1232;

/// Extended DNS Error codes (RFC 8914) Haven uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ede {
    /// 15: the operator (the school) blocked the name.
    Blocked = 15,
    /// 22: no upstream answered.
    NoReachableAuthority = 22,
}

/// A question a client asked, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Question {
    pub(crate) id: u16,
    pub(crate) query: Query,
    /// The name in lowercase, without the root dot.
    pub(crate) name: String,
    pub(crate) qtype: RecordType,
    pub(crate) recursion_desired: bool,
    /// The client's EDNS payload size, if it sent EDNS.
    pub(crate) edns_payload: Option<u16>,
    pub(crate) dnssec_ok: bool,
    pub(crate) checking_disabled: bool,
}

/// What to do with a packet that is not a question we answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Answer with this code (the ID and question as far as they could be read).
    Answer(Vec<u8>),
    /// Say nothing: not even a header, or a response (never answer responses).
    Drop,
}

/// Parses a query; anything else becomes a FORMERR, NOTIMP or nothing.
pub(crate) fn parse(packet: &[u8]) -> Result<Question, Reject> {
    if packet.len() < 12 {
        return Err(Reject::Drop);
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    if packet[2] & 0x80 != 0 {
        return Err(Reject::Drop);
    }
    let error = |rcode| {
        let mut m = Message::error_msg(id, OpCode::Query, rcode);
        m.metadata.recursion_available = true;
        Reject::Answer(m.to_vec().unwrap_or_default())
    };
    let Ok(msg) = Message::from_vec(packet) else { return Err(error(ResponseCode::FormErr)) };
    if msg.metadata.op_code != OpCode::Query {
        return Err(error(ResponseCode::NotImp));
    }
    if msg.metadata.message_type != MessageType::Query || msg.queries.len() != 1 {
        return Err(error(ResponseCode::FormErr));
    }
    let query = msg.queries[0].clone();
    if query.query_class() != DNSClass::IN {
        return Err(error(ResponseCode::NotImp));
    }
    let mut name = query.name().to_lowercase().to_ascii();
    if name.ends_with('.') {
        name.pop();
    }
    Ok(Question {
        id,
        qtype: query.query_type(),
        query,
        name,
        recursion_desired: msg.metadata.recursion_desired,
        edns_payload: msg.edns.as_ref().map(Edns::max_payload),
        dnssec_ok: msg.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
        checking_disabled: msg.metadata.checking_disabled,
    })
}

/// An answer to `q`, with EDNS (and an Extended DNS Error) when the client spoke EDNS.
pub(crate) fn response(q: &Question, rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>, ede: Option<(Ede, &str)>) -> Message {
    let mut m = Message::response(q.id, OpCode::Query);
    m.metadata.recursion_desired = q.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = q.checking_disabled;
    m.metadata.response_code = rcode;
    m.add_query(q.query.clone());
    m.insert_answers(answers);
    m.insert_authorities(authorities);
    if q.edns_payload.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP);
        edns.set_dnssec_ok(q.dnssec_ok);
        if let Some((code, text)) = ede {
            let mut data = (code as u16).to_be_bytes().to_vec();
            data.extend_from_slice(text.as_bytes());
            edns.options_mut().insert(EdnsOption::Unknown(EDE_OPTION, data));
        }
        m.set_edns(edns);
    }
    m
}

/// Encodes a response; over UDP, one larger than the client accepts is sent
/// truncated (TC set, question only) so the client retries over TCP.
pub(crate) fn encode(m: &Message, q: &Question, udp: bool) -> Vec<u8> {
    let bytes = m.to_vec().unwrap_or_default();
    if !udp {
        return bytes;
    }
    let limit = usize::from(q.edns_payload.map_or(512, |p| p.clamp(512, MAX_UDP)));
    if bytes.len() <= limit {
        return bytes;
    }
    m.truncate().to_vec().unwrap_or_default()
}

/// A name from our lowercase text form.
pub(crate) fn name(text: &str) -> Option<Name> {
    let mut n = Name::from_ascii(text).ok()?;
    n.set_fqdn(true);
    Some(n)
}

/// An upstream query for `q`: recursion desired, EDNS, the client's DO bit.
pub(crate) fn upstream_query(id: u16, q: &Question) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = q.checking_disabled;
    m.add_query(q.query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP);
    edns.set_dnssec_ok(q.dnssec_ok);
    m.set_edns(edns);
    m.to_vec().unwrap_or_default()
}

/// A question for `name`/`qtype` as if a client had asked it (safe-search targets).
pub(crate) fn synthetic_question(name_text: &str, qtype: RecordType, like: &Question) -> Option<Question> {
    let n = name(name_text)?;
    Some(Question {
        id: 0,
        query: Query::query(n, qtype),
        name: name_text.to_string(),
        qtype,
        recursion_desired: true,
        edns_payload: like.edns_payload,
        dnssec_ok: false,
        checking_disabled: false,
    })
}
