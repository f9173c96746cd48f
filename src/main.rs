//! The `gatewatch` command line. Wiring only: every command lives in `gatewatch::app`.

/// mimalloc: a record costs ~30 small allocations, and events are made on reading threads and
/// freed on the detectors' thread. With glibc's malloc a replay of the Kong hour took 1.23 s of
/// user CPU on one thread and 1.92 s on two; with mimalloc 1.14 s and 1.51 s (Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gatewatch::app::cli::main()
}
