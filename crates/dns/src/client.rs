//! Asking a DNS-over-HTTPS server one question and reading the answer as
//! plain data: what the filtering checks need to see a DNS answer the way a
//! device does, without hickory's types leaving this crate.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{RData, RecordType};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

use crate::wire::EDE_OPTION;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// The response code (`NoError`, `NXDomain`, `ServFail`, `Refused`, …).
    pub rcode: String,
    /// The Extended DNS Error, if any: its code and text (15 is "Blocked").
    pub ede: Option<(u16, String)>,
    /// CNAME targets in the answer, without the final dot.
    pub cnames: Vec<String>,
    /// Addresses in the answer.
    pub addresses: Vec<IpAddr>,
}

/// Why no answer could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// The name cannot be asked.
    #[error("{0:?} is not a name that can be asked")]
    Name(String),
    /// No connection, or it broke.
    #[error("DNS-over-HTTPS at {addr}: {why}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        why: String,
    },
    /// The server said no (an unknown token: 403).
    #[error("DNS-over-HTTPS at {addr} answered HTTP {status}: {body}")]
    Status {
        /// Where.
        addr: SocketAddr,
        /// The HTTP status.
        status: u16,
        /// What it said.
        body: String,
    },
    /// Not a DNS message.
    #[error("DNS-over-HTTPS at {0} sent something that is not a DNS answer")]
    Garbled(SocketAddr),
    /// No answer in time.
    #[error("DNS-over-HTTPS at {0} did not answer in time")]
    Timeout(SocketAddr),
}

/// Asks `name` (an `A` question, as a browser does) of the plain-HTTP DoH
/// listener at `addr`, under `/dns-query/<token>`, within `timeout`.
pub async fn ask_doh(addr: SocketAddr, token: &str, name: &str, timeout: Duration) -> Result<Observed, AskError> {
    tokio::time::timeout(timeout, ask(addr, token, name)).await.map_err(|_| AskError::Timeout(addr))?
}

async fn ask(addr: SocketAddr, token: &str, name: &str) -> Result<Observed, AskError> {
    let n = crate::wire::name(name).ok_or_else(|| AskError::Name(name.to_string()))?;
    let mut m = Message::query();
    m.metadata.id = 0; // RFC 8484 §4.1: 0 keeps answers cacheable.
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(n, RecordType::A));
    // With EDNS, as browsers ask: Haven says why it blocked (EDE) only to a client that speaks it.
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    m.set_edns(edns);
    let packet = m.to_vec().map_err(|_| AskError::Name(name.to_string()))?;
    let connect = |e: &dyn std::fmt::Display| AskError::Connect { addr, why: e.to_string() };
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| connect(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| connect(&e))?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::post(format!("/dns-query/{token}"))
        .header("host", addr.to_string())
        .header("content-type", "application/dns-message")
        .header("accept", "application/dns-message")
        .body(Full::new(Bytes::from(packet)))
        .map_err(|e| connect(&e))?;
    let response = sender.send_request(request).await.map_err(|e| connect(&e))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), 65_535).collect().await.map_err(|e| connect(&e))?.to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(AskError::Status { addr, status: status.as_u16(), body: String::from_utf8_lossy(&body).trim().chars().take(200).collect() });
    }
    let m = Message::from_vec(&body).map_err(|_| AskError::Garbled(addr))?;
    Ok(observe(&m))
}

fn observe(m: &Message) -> Observed {
    let ede = m.edns.as_ref().and_then(|e| {
        e.options().as_ref().iter().find_map(|(_, o)| match o {
            hickory_proto::rr::rdata::opt::EdnsOption::Unknown(EDE_OPTION, data) if data.len() >= 2 => {
                Some((u16::from_be_bytes([data[0], data[1]]), String::from_utf8_lossy(&data[2..]).into_owned()))
            }
            _ => None,
        })
    });
    let mut out = Observed { rcode: format!("{:?}", m.metadata.response_code), ede, ..Observed::default() };
    for r in &m.answers {
        match &r.data {
            RData::CNAME(c) => out.cnames.push(c.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
            RData::A(a) => out.addresses.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => out.addresses.push(IpAddr::V6(a.0)),
            _ => {}
        }
    }
    out
}
