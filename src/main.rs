fn main() -> std::process::ExitCode {
    keybridge::cli::run()
}
