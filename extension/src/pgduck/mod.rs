//! The backend's side of pgduck_server: the client ([`client`]: pooled connections,
//! interruptible waits, `TRANSMIT` streams, `COPY FROM STDIN`) and the decoding of the
//! COPY text rows it streams back ([`copy_text`]).

pub mod client;
pub mod copy_text;

pub use client::{Connection, CopyIn, RowStream};
