//! `gaia env-run [--env-file F] -- CMD ARGS…`: runs a command with the env file's variables
//! added to the environment. The command replaces this process (`execvp`), so its exit code,
//! its death by a signal and the signals sent to it are exactly what the caller sees; no shell
//! ever reads the arguments. Values are never printed: errors name the file and the line.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::cli::EnvRunArgs;
use crate::config::DEFAULT_ENV_FILE;
use crate::exit::{self, CliError};

/// What a shell answers when the command cannot be executed, or does not exist.
const CANNOT_EXECUTE: u8 = 126;
const NOT_FOUND: u8 = 127;

/// Runs `args.argv` in place of this process; returns only when that fails.
pub fn run(args: EnvRunArgs, env_file: Option<PathBuf>) -> CliError {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let Some(path) = env_file
        .or_else(|| env.get("GAIA_ENV_FILE").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(DEFAULT_ENV_FILE)).filter(|p| p.exists()))
    else {
        return CliError::bad_input(format!(
            "no env file: pass --env-file PATH (or set GAIA_ENV_FILE; default {DEFAULT_ENV_FILE})"
        ));
    };
    let vars = match crate::envfile::load(&path) {
        Ok(vars) => vars,
        Err(e) => return CliError::bad_input(e),
    };
    let Some((program, rest)) = args.argv.split_first() else {
        return CliError::bad_input("no command given after --");
    };
    let err = std::process::Command::new(program)
        .args(rest)
        .envs(&vars)
        .exec();
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => NOT_FOUND,
        std::io::ErrorKind::PermissionDenied => CANNOT_EXECUTE,
        _ => exit::FAILURE,
    };
    CliError::new(
        code,
        format!("cannot run {}: {err}", program.to_string_lossy()),
    )
}
