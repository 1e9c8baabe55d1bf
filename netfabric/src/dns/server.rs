//! The request handler behind hickory's server: who asks, then our names
//! ([`Directory`]) or the upstream resolvers.

use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode},
    rr::{DNSClass, Name, Record},
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};

use super::{
    names::{Directory, Resolution},
    upstream::{Forwarded, Upstream},
};
use crate::observe::metrics::{DnsMetrics, DnsOutcome};

/// The largest UDP answer we send (the DNS flag day 2020 value: no IP
/// fragmentation on common paths); larger ones are truncated (TC) and the
/// client asks again over TCP.
const MAX_UDP_PAYLOAD: u16 = 1232;

/// Answers queries from this host's containers and the host.
pub struct Handler {
    pub directory: Arc<ArcSwap<Directory>>,
    pub upstream: Option<Arc<Upstream>>,
    pub metrics: DnsMetrics,
}

/// What to send back.
struct Reply {
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

impl Handler {
    async fn decide(&self, request: &Request) -> Reply {
        let directory = self.directory.load_full();
        let Some(asker) = directory.asker(request.src().ip()) else {
            return Reply::error(ResponseCode::Refused, DnsOutcome::Refused);
        };
        if request.metadata.message_type != MessageType::Query {
            return Reply::error(ResponseCode::FormErr, DnsOutcome::Malformed);
        }
        if request.metadata.op_code != OpCode::Query {
            return Reply::error(ResponseCode::NotImp, DnsOutcome::Malformed);
        }
        let queries = request.queries.queries();
        let [query] = queries else {
            return Reply::error(ResponseCode::FormErr, DnsOutcome::Malformed);
        };
        if query.query_class() != DNSClass::IN {
            return Reply::error(ResponseCode::Refused, DnsOutcome::Malformed);
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
        match directory.resolve(asker, &name, qtype) {
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
                let Some(upstream) = &self.upstream else {
                    return Reply::error(ResponseCode::Refused, DnsOutcome::Refused);
                };
                // The original spelling: upstream answers name it.
                let name = Name::from(query.name().clone());
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
                    Forwarded::Failed => {
                        Reply::error(ResponseCode::ServFail, DnsOutcome::UpstreamFailed)
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        self.metrics.query(match request.protocol() {
            Protocol::Tcp => "tcp",
            _ => "udp",
        });
        let reply = self.decide(request).await;
        self.metrics.response(reply.outcome);

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.code;
        metadata.authoritative = reply.authoritative;
        metadata.recursion_available = self.upstream.is_some();
        let edns = request.edns.as_ref().map(|asked| {
            let mut ours = Edns::new();
            ours.set_max_payload(asked.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(
            metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            std::iter::empty(),
        );
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
