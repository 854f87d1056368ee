fn main() -> std::process::ExitCode {
    hybrid::cli::main()
}
