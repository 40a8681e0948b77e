//! The `cellgate` binary: everything lives in the library; see `gateway::cli`.

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
