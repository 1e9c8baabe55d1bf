//! The request handler: who asks, then our names ([`Directory`]) or the
//! upstream resolvers. TCP goes through hickory's server
//! ([`RequestHandler`]); UDP through [`super::udp`]'s receive loops, which
//! call [`Handler::answer_udp`]. Both decide with the same code and build
//! the reply with hickory's `MessageResponseBuilder`.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode},
    rr::{DNSClass, Name, Record, RecordType},
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder},
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::{MessageRequest, MessageResponse, MessageResponseBuilder, Queries},
};

use super::{
    names::{Directory, Resolution},
    upstream::{Forwarded, Upstream},
};
use crate::observe::metrics::{DnsCounters, DnsOutcome};

/// The largest UDP answer we send (the DNS flag day 2020 value: no IP
/// fragmentation on common paths); larger ones are truncated (TC) and the
/// client asks again over TCP.
const MAX_UDP_PAYLOAD: u16 = 1232;
/// A UDP reply without EDNS fits the 512 bytes of RFC 1035 section 4.2.1.
const MAX_PLAIN_UDP_PAYLOAD: u16 = 512;

/// Answers queries from this host's containers and the host.
pub struct Handler {
    pub directory: Arc<ArcSwap<Directory>>,
    pub upstream: Option<Arc<Upstream>>,
    pub counters: DnsCounters,
}

/// What to send back.
pub(super) struct Reply {
    code: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    outcome: DnsOutcome,
}

impl Reply {
    fn error(code: ResponseCode, outcome: DnsOutcome) -> Self {
        Reply {
            code,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            outcome,
        }
    }
}

/// What the directory alone decides.
pub(super) enum Step {
    /// The reply (our names, or an error).
    Reply(Reply),
    /// A name for the upstream resolvers (in the query's spelling).
    Forward(Name, RecordType),
}

/// What [`Handler::answer_udp`] did with one datagram.
pub(super) enum UdpAnswer {
    /// Nothing to send (not a DNS header, or a response).
    Silence,
    /// The reply was written. `outcome`: that of a decided reply, `None`
    /// for the FORMERR to a message hickory cannot read (not counted).
    Written { outcome: Option<DnsOutcome> },
    /// For the upstream resolvers: the reply comes later
    /// ([`Handler::forward_udp`]).
    Forward(Box<Request>, Name, RecordType),
}

impl Handler {
    /// The decision for `request` from `src` when it needs no upstream.
    pub(super) fn decide_local(
        &self,
        directory: &Directory,
        request: &MessageRequest,
        src: IpAddr,
    ) -> Step {
        let Some(asker) = directory.asker(src) else {
            return Step::Reply(Reply::error(ResponseCode::Refused, DnsOutcome::Refused));
        };
        if request.metadata.message_type != MessageType::Query {
            return Step::Reply(Reply::error(ResponseCode::FormErr, DnsOutcome::Malformed));
        }
        if request.metadata.op_code != OpCode::Query {
            return Step::Reply(Reply::error(ResponseCode::NotImp, DnsOutcome::Malformed));
        }
        let queries = request.queries.queries();
        let [query] = queries else {
            return Step::Reply(Reply::error(ResponseCode::FormErr, DnsOutcome::Malformed));
        };
        if query.query_class() != DNSClass::IN {
            return Step::Reply(Reply::error(ResponseCode::Refused, DnsOutcome::Malformed));
        }
        let name = Name::from(query.name().clone()).to_lowercase();
        let qtype = query.query_type();
        let negative = |code, outcome| Reply {
            code,
            authoritative: true,
            answers: Vec::new(),
            authorities: vec![directory.soa().clone()],
            outcome,
        };
        Step::Reply(match directory.resolve(asker, &name, qtype) {
            Resolution::Answer(answers) => Reply {
                code: ResponseCode::NoError,
                authoritative: true,
                answers,
                authorities: Vec::new(),
                outcome: DnsOutcome::Answer,
            },
            Resolution::NoData => negative(ResponseCode::NoError, DnsOutcome::NoData),
            Resolution::NxDomain => negative(ResponseCode::NXDomain, DnsOutcome::NxDomain),
            Resolution::NotOurs => {
                if self.upstream.is_none() {
                    Reply::error(ResponseCode::Refused, DnsOutcome::Refused)
                } else {
                    // The original spelling: upstream answers name it.
                    return Step::Forward(Name::from(query.name().clone()), qtype);
                }
            }
        })
    }

    /// Asks the upstream resolvers (or their cache).
    pub(super) async fn forward(&self, name: Name, qtype: RecordType) -> Reply {
        let Some(upstream) = &self.upstream else {
            return Reply::error(ResponseCode::Refused, DnsOutcome::Refused);
        };
        match upstream.forward(name, qtype).await {
            Forwarded::Records(answers) => Reply {
                code: ResponseCode::NoError,
                authoritative: false,
                answers,
                authorities: Vec::new(),
                outcome: DnsOutcome::Forwarded,
            },
            Forwarded::Negative { code, soa } => Reply {
                code,
                authoritative: false,
                answers: Vec::new(),
                authorities: soa.into_iter().map(|soa| *soa).collect(),
                outcome: DnsOutcome::Forwarded,
            },
            Forwarded::Failed => Reply::error(ResponseCode::ServFail, DnsOutcome::UpstreamFailed),
        }
    }

    async fn decide(&self, request: &Request) -> Reply {
        let directory = self.directory.load_full();
        match self.decide_local(&directory, request, request.src().ip()) {
            Step::Reply(reply) => reply,
            Step::Forward(name, qtype) => self.forward(name, qtype).await,
        }
    }

    /// The response's header and EDNS for `reply` to `request`.
    fn response_parts(&self, request: &MessageRequest, reply: &Reply) -> (Metadata, Option<Edns>) {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.code;
        metadata.authoritative = reply.authoritative;
        metadata.recursion_available = self.upstream.is_some();
        let edns = request.edns.as_ref().map(|asked| {
            let mut ours = Edns::new();
            ours.set_max_payload(asked.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours
        });
        (metadata, edns)
    }

    /// Answers one UDP datagram `msg` from `src` as hickory's server
    /// answers it, the reply written to `out` (cleared first): silence for
    /// less than a header or for a response, FORMERR (without counting the
    /// query) for a message hickory cannot read.
    pub(super) fn answer_udp(
        &self,
        directory: &Directory,
        msg: &[u8],
        src: SocketAddr,
        out: &mut Vec<u8>,
    ) -> UdpAnswer {
        out.clear();
        let Ok(header) = Header::read(&mut BinDecoder::new(msg)) else {
            return UdpAnswer::Silence;
        };
        let request = match Request::from_bytes(msg.to_vec(), src, Protocol::Udp) {
            Ok(request) => request,
            Err(_) => {
                let Ok(empty) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                    return UdpAnswer::Silence;
                };
                encode_udp(
                    MessageResponseBuilder::new(&empty, None)
                        .error_msg(&header.metadata, ResponseCode::FormErr),
                    out,
                );
                return UdpAnswer::Written { outcome: None };
            }
        };
        if request.metadata.message_type == MessageType::Response {
            // Never answer a response: no reflection.
            return UdpAnswer::Silence;
        }
        self.counters.query(false);
        match self.decide_local(directory, &request, src.ip()) {
            Step::Reply(reply) => {
                self.counters.response(reply.outcome);
                self.encode_reply(&request, &reply, out);
                UdpAnswer::Written {
                    outcome: Some(reply.outcome),
                }
            }
            Step::Forward(name, qtype) => UdpAnswer::Forward(Box::new(request), name, qtype),
        }
    }

    /// The reply to a UDP `request` that [`answer_udp`](Self::answer_udp)
    /// left for the upstream resolvers, written to `out` (cleared first).
    pub(super) async fn forward_udp(
        &self,
        request: &Request,
        name: Name,
        qtype: RecordType,
        out: &mut Vec<u8>,
    ) {
        let reply = self.forward(name, qtype).await;
        self.counters.response(reply.outcome);
        out.clear();
        self.encode_reply(request, &reply, out);
    }

    fn encode_reply(&self, request: &MessageRequest, reply: &Reply, out: &mut Vec<u8>) {
        let (metadata, edns) = self.response_parts(request, reply);
        encode_udp(build_response(request, reply, metadata, edns.as_ref()), out);
    }
}

/// The response to `request` carrying `reply`, built with hickory's
/// builder (the same for UDP and TCP).
fn build_response<'q, 'a>(
    request: &'q MessageRequest,
    reply: &'a Reply,
    metadata: Metadata,
    edns: Option<&'q Edns>,
) -> MessageResponse<
    'q,
    'a,
    std::slice::Iter<'a, Record>,
    std::slice::Iter<'a, Record>,
    std::iter::Empty<&'a Record>,
    std::iter::Empty<&'a Record>,
> {
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(edns) = edns {
        builder.edns(edns);
    }
    builder.build(
        metadata,
        reply.answers.iter(),
        reply.authorities.iter(),
        std::iter::empty(),
        std::iter::empty(),
    )
}

/// Encodes `response` for UDP into `out` (empty) as hickory's server does:
/// at most the EDNS payload size of the response (512 bytes without EDNS),
/// truncated (TC) beyond it, a bare SERVFAIL header if it cannot be
/// encoded at all.
fn encode_udp<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    out: &mut Vec<u8>,
) {
    let id = response.metadata().id;
    let max = response
        .edns()
        .map_or(MAX_PLAIN_UDP_PAYLOAD, Edns::max_payload);
    let mut encoder = BinEncoder::new(out);
    encoder.set_max_size(max);
    if let Err(error) = response.destructive_emit(&mut encoder) {
        tracing::debug!(%error, "DNS response not encodable: SERVFAIL");
        out.clear();
        let mut encoder = BinEncoder::new(out);
        encoder.set_max_size(MAX_PLAIN_UDP_PAYLOAD);
        let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
        metadata.response_code = ResponseCode::ServFail;
        let header = Header {
            metadata,
            counts: HeaderCounts::default(),
        };
        if header.emit(&mut encoder).is_err() {
            out.clear();
        }
    }
}

/// The TCP side, through hickory's server.
pub struct TcpHandler(pub Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for TcpHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let handler = &self.0;
        handler
            .counters
            .query(matches!(request.protocol(), Protocol::Tcp));
        let reply = handler.decide(request).await;
        handler.counters.response(reply.outcome);

        let (metadata, edns) = handler.response_parts(request, &reply);
        let response = build_response(request, &reply, metadata, edns.as_ref());
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, src = %request.src(), "DNS response not sent");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
