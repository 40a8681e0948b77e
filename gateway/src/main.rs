//! The `cellgate` binary: everything lives in the library; see `gateway::cli`.

/// mimalloc instead of glibc malloc: the proxy allocates and frees small buffers on every
/// request from every worker thread, and glibc's malloc/free showed as ~12% of the proxy's
/// user CPU under load-tests/bench/proxy-vs-nginx.sh.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
