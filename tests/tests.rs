//! The one integration-test binary: the real `archiver` executable and library, against real
//! files and a real MariaDB sandbox (started by `tests/common` if `tools/test` did not).

mod architecture;
mod common;
mod engine;
mod golden;
mod wal;
