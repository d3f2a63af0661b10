//! The clients' history: every operation's invocation and answer, in the simulation's execution
//! order (a single thread runs every host, so the order of the records is the real-time order).

use parking_lot::Mutex;
use serde::Serialize;
use std::sync::Arc;

/// The operations and answers of the register model the real-network checker uses too.
pub use meridian_tests::history::{Op, Ret};

#[derive(Clone, Debug, Serialize)]
pub enum Event {
    Invoke {
        id: u64,
        thread: u64,
        key: String,
        op: Op,
        at_ms: u64,
    },
    /// A definite answer. `revision` is the write's revision (writes only).
    Ok {
        id: u64,
        ret: Ret,
        revision: Option<u64>,
        at_ms: u64,
    },
    /// No definite answer: the operation may or may not have taken effect.
    Unknown { id: u64, at_ms: u64, why: String },
}

/// A `bounded:<ms>` read that was answered (kept apart from the events: it is not linearizable,
/// and is checked against its own bound by `invariants::bounded_staleness`).
#[derive(Clone, Debug, Serialize)]
pub struct BoundedRead {
    pub key: String,
    pub bound_ms: u64,
    pub invoked_ms: u64,
    /// `mod_revision` of the answer; `None` when the key was absent.
    pub mod_revision: Option<u64>,
    /// The staleness bound the answer reported.
    pub staleness_ms: u64,
}

#[derive(Clone, Default)]
pub struct History {
    events: Arc<Mutex<Vec<Event>>>,
    next_id: Arc<Mutex<u64>>,
    bounded: Arc<Mutex<Vec<BoundedRead>>>,
}

fn now_ms() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
}

impl History {
    pub fn invoke(&self, thread: u64, key: &str, op: Op) -> u64 {
        let id = {
            let mut n = self.next_id.lock();
            *n += 1;
            *n
        };
        self.events.lock().push(Event::Invoke {
            id,
            thread,
            key: key.into(),
            op,
            at_ms: now_ms(),
        });
        id
    }

    pub fn ok(&self, id: u64, ret: Ret, revision: Option<u64>) {
        self.events.lock().push(Event::Ok {
            id,
            ret,
            revision,
            at_ms: now_ms(),
        });
    }

    pub fn unknown(&self, id: u64, why: String) {
        self.events.lock().push(Event::Unknown {
            id,
            at_ms: now_ms(),
            why,
        });
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }

    /// The simulation's clock now, in milliseconds.
    pub fn now_ms(&self) -> u64 {
        now_ms()
    }

    pub fn bounded_read(&self, r: BoundedRead) {
        self.bounded.lock().push(r);
    }

    pub fn bounded_reads(&self) -> Vec<BoundedRead> {
        self.bounded.lock().clone()
    }
}

/// One operation with its outcome, assembled from the events.
#[derive(Clone, Debug)]
pub struct Completed {
    pub id: u64,
    pub thread: u64,
    pub key: String,
    pub op: Op,
    /// Position of the invocation / answer in the event order.
    pub invoked: usize,
    pub answered: Option<usize>,
    pub ret: Option<Ret>,
    pub revision: Option<u64>,
}

impl Completed {
    pub fn is_write(&self) -> bool {
        !matches!(self.op, Op::Get)
    }

    /// A write that certainly took effect.
    pub fn acked_write(&self) -> bool {
        matches!(
            self.ret,
            Some(Ret::PutOk) | Some(Ret::DeleteOk(_)) | Some(Ret::CasOk(true))
        )
    }

    /// A write that may have taken effect.
    pub fn maybe_write(&self) -> bool {
        self.is_write() && (self.acked_write() || self.ret.is_none())
    }
}

pub fn operations(events: &[Event]) -> Vec<Completed> {
    let mut out: Vec<Completed> = Vec::new();
    let mut pos = std::collections::HashMap::new();
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Invoke {
                id,
                thread,
                key,
                op,
                ..
            } => {
                pos.insert(*id, out.len());
                out.push(Completed {
                    id: *id,
                    thread: *thread,
                    key: key.clone(),
                    op: op.clone(),
                    invoked: i,
                    answered: None,
                    ret: None,
                    revision: None,
                });
            }
            Event::Ok {
                id, ret, revision, ..
            } => {
                if let Some(&p) = pos.get(id) {
                    out[p].answered = Some(i);
                    out[p].ret = Some(ret.clone());
                    out[p].revision = *revision;
                }
            }
            Event::Unknown { .. } => {}
        }
    }
    out
}
