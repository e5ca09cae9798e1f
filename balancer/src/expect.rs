//! `Expect: 100-continue` through the proxy (RFC 9110 §10.1.1): the node, not the
//! balancer, decides whether the client sends its body.
//!
//! hyper's server sends `100 Continue` by itself the first time a request body is polled,
//! and its client sends a body as soon as it can, waiting for no 100. So for a request
//! that expects 100-continue the balancer forwards the `Expect` header and puts the
//! client's body behind a [`Gate`]: the body sent to the node stays pending, without
//! touching the client's body, until the node's own `100 Continue` arrives (hyper's
//! `on_informational` callback). If the node gives a final answer first (413, 400, 412,
//! 404...), the client's body is dropped unread, so hyper never sends the client a 100
//! and closes the connection after the answer, exactly as a node does when a client
//! talks to it directly. A body that never moved can also be offered to another node
//! when the first one dies before asking for it.
//!
//! The gate is passed once per request; the body's frames do not go through it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use http::{Request, StatusCode};

use crate::ClientBody;

/// Holds a client's request body until the node asks for it.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
}

#[derive(Debug)]
enum State {
    /// The node has not asked for the body yet (`open` once its 100 arrived).
    Held {
        body: ClientBody,
        open: bool,
        waker: Option<Waker>,
    },
    /// The body is on its way to the node.
    Flowing,
    /// The balancer took the body back: the node answered first or died. `closed` once
    /// the node's response is done with, which ends its connection.
    Withdrawn { closed: bool, waker: Option<Waker> },
}

impl Gate {
    pub fn new(body: ClientBody) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::Held {
                body,
                open: false,
                waker: None,
            }),
        })
    }

    /// Arranges for the node's `100 Continue` to `request` to open the gate.
    pub fn watch<B>(self: &Arc<Self>, request: &mut Request<B>) {
        let gate = Arc::clone(self);
        hyper::ext::on_informational(request, move |response| {
            if response.status() == StatusCode::CONTINUE {
                gate.open();
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every transition leaves a whole state behind: a panic cannot half-write one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets the body through (the node asked for it with its `100 Continue`).
    pub fn open(&self) {
        if let State::Held { open, waker, .. } = &mut *self.lock() {
            *open = true;
            if let Some(waker) = waker.take() {
                waker.wake();
            }
        }
    }

    /// The body once the node has asked for it; `Ready(None)` once it was withdrawn and
    /// the node's connection should end.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<ClientBody>> {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Flowing) {
            State::Held {
                body, open: true, ..
            } => Poll::Ready(Some(body)),
            State::Held {
                body, open: false, ..
            } => {
                *state = State::Held {
                    body,
                    open: false,
                    waker: Some(cx.waker().clone()),
                };
                Poll::Pending
            }
            State::Withdrawn { closed: false, .. } => {
                *state = State::Withdrawn {
                    closed: false,
                    waker: Some(cx.waker().clone()),
                };
                Poll::Pending
            }
            other => {
                *state = other;
                Poll::Ready(None)
            }
        }
    }

    /// Takes the body back if the node never asked for it (`None` if it is flowing).
    pub fn withdraw(&self) -> Option<ClientBody> {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Flowing) {
            State::Held { body, waker, .. } => {
                *state = State::Withdrawn {
                    closed: false,
                    waker,
                };
                Some(body)
            }
            other => {
                *state = other;
                None
            }
        }
    }

    /// After a withdrawal: the body sent to the node fails, which ends its connection (a
    /// request head whose body never followed leaves it unusable).
    pub fn close(&self) {
        if let State::Withdrawn { closed, waker } = &mut *self.lock() {
            *closed = true;
            if let Some(waker) = waker.take() {
                waker.wake();
            }
        }
    }
}

/// A node answered before asking for the body: closes the gate when the answer's body is
/// done with, so the node's connection ends then and not before (an error on it earlier
/// would cut the answer short).
#[derive(Debug)]
pub struct AnsweredFirst(Arc<Gate>);

impl AnsweredFirst {
    /// Withdraws and drops the client's body if the node never asked for it; hyper then
    /// sends the client no 100 and closes its connection after the answer.
    pub fn check(gate: &Arc<Gate>) -> Option<Self> {
        gate.withdraw().map(|body| {
            drop(body);
            Self(Arc::clone(gate))
        })
    }
}

impl Drop for AnsweredFirst {
    fn drop(&mut self) {
        self.0.close();
    }
}
