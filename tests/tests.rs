//! The one integration-test binary: the real `archiver` executable and library, against real
//! files and a real MariaDB sandbox (started by `tests/common` if `tools/test` did not).

// Tests are tables of cases and stories told in order; they read better whole, so the
// 70-line limit on functions (clippy.toml) is for the product's code only.
#![allow(clippy::too_many_lines)]

mod architecture;
mod common;
mod engine;
mod golden;
mod journal;
mod wal;
