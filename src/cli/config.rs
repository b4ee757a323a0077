//! `keybridge config`: check a config file before a restart, and print the table of keys,
//! variables and flags that `docs/configuration.md` carries.

use super::CliResult;
use std::path::Path;
use std::process::ExitCode;

/// Says `FILE: ok`, or names the bad key and its line and exits 1.
pub fn check(file: &Path) -> CliResult {
    match crate::config::check_file(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn env_table() -> CliResult {
    print!("{}", crate::config::env_table());
    Ok(ExitCode::SUCCESS)
}
