//! Helpers over pg_sys shared by the rest of the extension.

pub mod util;
