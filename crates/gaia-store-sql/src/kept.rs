//! Connections kept out of sqlx's pool between uses.
//!
//! sqlx checks a connection with a round trip each time it comes back to its pool (and may
//! check it again before lending it out). A caller that uses connections one short piece of
//! work at a time, and knows when a piece ended well, can keep them instead: the next piece
//! takes a kept one with no round trip. A piece that fails hands its connection back to the
//! pool, whose check then decides whether it is still usable.
//!
//! Kept connections count as lent out, and closing a pool waits for every loan to come back:
//! [`Kept::release`] hands them back, and keeps none from then on, before the store closes
//! its pool.

use std::sync::{Mutex, MutexGuard, PoisonError};

use sqlx::Database;
use sqlx::pool::PoolConnection;

/// Up to a fixed number of connections of one pool, kept for the next use.
#[derive(Debug)]
pub struct Kept<DB: Database> {
    conns: Mutex<KeptConns<DB>>,
    /// How many to keep.
    most: usize,
}

#[derive(Debug)]
struct KeptConns<DB: Database> {
    conns: Vec<PoolConnection<DB>>,
    /// Set once the store closes: nothing is kept any more.
    released: bool,
}

impl<DB: Database> Kept<DB> {
    /// Keeps up to `most` connections (none: every connection goes back to the pool).
    pub fn new(most: usize) -> Self {
        Self {
            conns: Mutex::new(KeptConns {
                conns: Vec::new(),
                released: false,
            }),
            most,
        }
    }

    fn lock(&self) -> MutexGuard<'_, KeptConns<DB>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A kept connection, if there is one.
    pub fn take(&self) -> Option<PoolConnection<DB>> {
        self.lock().conns.pop()
    }

    /// Keeps `conn` after a use that ended well, or hands it back to the pool when enough are
    /// kept or the store closes.
    pub fn put(&self, conn: PoolConnection<DB>) {
        let mut kept = self.lock();
        if !kept.released && kept.conns.len() < self.most {
            kept.conns.push(conn);
        }
    }

    /// Hands every kept connection back to the pool and keeps none from now on (one still in
    /// use goes back when its use ends).
    pub fn release(&self) {
        let conns = {
            let mut kept = self.lock();
            kept.released = true;
            std::mem::take(&mut kept.conns)
        };
        drop(conns);
    }

    /// How many connections are kept now.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// Whether none is kept now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
