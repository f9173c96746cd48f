//! The `gatewatch` command line. Wiring only: every command lives in `gatewatch::app`.

fn main() -> std::process::ExitCode {
    gatewatch::app::cli::main()
}
