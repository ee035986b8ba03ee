// SPDX-License-Identifier: MPL-2.0
//! One frame's inference: attempts on servers within the frame's budget,
//! each one request (encode, send, decode), its failure sorted into the
//! server's fault (retried elsewhere, the server suspect) or not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;

use super::Inner;
use super::budget::{AttemptBound, Deadline};
use super::http::{BodyError, SendError, refused_credentials, too_large};
use super::protocol::{self, Output, Tensor};
use super::servers::Lease;
use super::tensor::INLINE_BYTES;

/// Why an attempt failed, and whether another server may do better.
pub(super) struct Failure {
    pub msg: String,
    /// The server is at fault (connection, 5xx, no answer within the
    /// attempt's bound): it becomes suspect and the request is retried.
    pub server_fault: bool,
}

/// A successful inference.
pub(super) struct Answer {
    pub server: usize,
    pub outputs: Vec<Output>,
    pub request_time: Duration,
    /// Attempts it took, this one included.
    pub attempts: u32,
}

impl Inner {
    /// One request to the lease's server, answered within `bound`.
    async fn infer(
        &self,
        lease: &Lease,
        tensor: &Arc<Tensor>,
        id: u64,
        bound: Duration,
    ) -> Result<Vec<Output>, Failure> {
        if let Some(grpc) = self.grpc(lease.slot.server) {
            let name = &lease.input_name;
            return grpc.infer(&self.model, tensor, name, id, bound).await;
        }
        let url = self.url(lease.slot.server, &protocol::infer(&self.model_path));
        let binary = lease.binary;
        let request = if tensor.bytes.len() > INLINE_BYTES {
            let (t, name) = (tensor.clone(), lease.input_name.clone());
            tokio::task::spawn_blocking(move || t.encode(binary, &name, id))
                .await
                .map_err(|e| Failure {
                    msg: format!("encoding the request: {e}"),
                    server_fault: false,
                })?
        } else {
            tensor.encode(binary, &lease.input_name, id)
        };
        let fault = |msg: String| Failure {
            msg,
            server_fault: true,
        };
        let reply = self.http.post(&url, request).await.map_err(|e| match e {
            SendError::Build(msg) => Failure {
                msg,
                server_fault: false,
            },
            SendError::Connection(e) => fault(e.msg),
        })?;
        let status = reply.status;
        let body = match reply.body {
            Ok(body) => body,
            // Not the server's fault: any server would send as big an
            // answer, so retrying only costs time.
            Err(BodyError::TooLarge) if status.is_success() => {
                return Err(Failure {
                    msg: too_large(),
                    server_fault: false,
                });
            }
            // The status says what went wrong.
            Err(BodyError::TooLarge) => too_large().into(),
            Err(BodyError::Read(e)) => return Err(fault(format!("reading the response: {e}"))),
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            let msg = match refused_credentials(status) {
                Some(why) => format!("{why}: {text}"),
                None => format!("{status}: {text}"),
            };
            return Err(Failure {
                msg,
                // 404: this server lacks the model (another may have it);
                // 429: overloaded. Other 4xx (401, 403 too): the request
                // itself is wrong.
                server_fault: status.is_server_error()
                    || status == StatusCode::NOT_FOUND
                    || status == StatusCode::TOO_MANY_REQUESTS,
            });
        }
        protocol::parse_response(&body, reply.header_len).map_err(|msg| Failure {
            msg: format!("bad response: {msg}"),
            server_fault: false,
        })
    }

    /// Tries servers until one answers, within the frame's budget (see
    /// [`Deadline::attempt`]). Without `timeout`, an attempt is bounded by
    /// [`DEFAULT_REQUEST_TIMEOUT`](super::budget::DEFAULT_REQUEST_TIMEOUT).
    /// Running out of the frame's budget is not the server's fault.
    /// `id` is the first frame's sequence number, `frames` how many the
    /// tensor holds; `first` the first attempt's lease, acquired already.
    pub(super) async fn run(
        this: &Arc<Inner>,
        tensor: Arc<Tensor>,
        (id, frames): (u64, usize),
        deadline: Deadline,
        attempts: u32,
        first: Result<Lease, String>,
    ) -> Result<Answer, String> {
        let what = match frames {
            1 => format!("frame {id}"),
            n => format!("the batch of {n} frames from {id}"),
        };
        let mut errors = Vec::new();
        let mut tried = Vec::new();
        let mut first = Some(first);
        for attempt in 1..=attempts {
            let lease = match first.take() {
                Some(lease) => lease,
                None => this.servers.acquire(deadline.at, &tried).await,
            };
            let lease = match lease {
                Ok(lease) => lease,
                Err(e) => {
                    errors.push(e);
                    break;
                }
            };
            let server = lease.slot.server;
            tried.push(server);
            let AttemptBound { bound, budget_end } =
                deadline.attempt(Instant::now(), attempt == attempts);
            this.servers.sending(server);
            let t0 = Instant::now();
            let result = tokio::time::timeout(bound, this.infer(&lease, &tensor, id, bound)).await;
            let timed_out = result.is_err();
            let result = match result {
                Ok(r) => r,
                Err(_) if budget_end => Err(Failure {
                    msg: format!("no answer before the frame's deadline ({bound:?} left)"),
                    server_fault: false,
                }),
                Err(_) => Err(Failure {
                    msg: format!("no answer within {bound:?}"),
                    server_fault: true,
                }),
            };
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(t0);
            // Counted while the slot is held: the limit sees the requests
            // in flight with this one.
            let change = match &result {
                Ok(_) => this.servers.succeeded(server, t0, now),
                Err(f) => this.servers.failed(server, f.server_fault || timed_out),
            };
            drop(lease);
            let url = this.servers.url(server);
            if let Some(c) = change {
                this.log(
                    gst::DebugLevel::Debug,
                    format_args!("{url}: limit {} -> {}", c.from, c.to),
                );
            }
            match result {
                Ok(outputs) => {
                    return Ok(Answer {
                        server,
                        outputs,
                        request_time: elapsed,
                        attempts: attempt,
                    });
                }
                Err(f) => {
                    this.log(
                        gst::DebugLevel::Debug,
                        format_args!("{what}: attempt {attempt} on {url}: {}", f.msg),
                    );
                    errors.push(format!("{url}: {}", f.msg));
                    if !f.server_fault {
                        break;
                    }
                    Inner::mark_suspect(this, server, &f.msg);
                }
            }
        }
        if tried.is_empty() {
            // No request was sent: why is the whole story.
            return Err(errors.join("; "));
        }
        Err(format!(
            "inference of {what} on model '{}' failed after {} attempt(s): {}",
            this.model,
            tried.len(),
            errors.join("; ")
        ))
    }
}
