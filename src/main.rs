//! The `archiver` binary: everything lives in the library; see `archiver::cli`.

fn main() -> std::process::ExitCode {
    archiver::cli::main()
}
