//! The top-level commands, each built only when it is the one being run.
//!
//! clap's derive builds every command, flag and help text before it parses anything. Gaia has
//! some thirty commands and hundreds of flags, and building (then dropping) all of them was
//! about a quarter of the instructions a short command like `gaia claim acquire` runs in all.
//! [`top_level_commands!`] declares the top-level enum instead: each command's name and
//! one-line help are set at once, and its flags and subcommands through clap's `defer`, which
//! runs when clap reaches that command; and when the command line plainly names one, the
//! others are left out ([`for_args`]). Help and errors see the same tree as before.
//! Completion scripts are generated from the whole tree built at once ([`expanded`]): clap
//! makes the `help` command's subtree from the commands as they are when it builds their
//! parent, before it runs their deferred parts.

use std::cell::Cell;
use std::ffi::OsString;

/// Which top-level commands the tree being built has, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Build {
    /// All of them, each deferred: the default.
    Deferred,
    /// All of them, whole (see [`expanded`]).
    Whole,
    /// Only this one, deferred: the command line names it (see [`invoked`]).
    Only(&'static str),
}

impl Build {
    pub(crate) fn includes(self, name: &str) -> bool {
        match self {
            Build::Only(only) => only == name,
            Build::Deferred | Build::Whole => true,
        }
    }
}

thread_local! {
    static BUILD: Cell<Build> = const { Cell::new(Build::Deferred) };
}

pub(crate) fn build_mode() -> Build {
    BUILD.with(Cell::get)
}

/// Runs `f` building top-level commands as `mode` says.
fn building<T>(mode: Build, f: impl FnOnce() -> T) -> T {
    BUILD.with(|b| b.set(mode));
    let out = f();
    BUILD.with(|b| b.set(Build::Deferred));
    out
}

/// Runs `f` with every top-level command built at once, for a caller that needs the whole
/// tree as it is before clap builds it (completion scripts).
pub(crate) fn expanded<T>(f: impl FnOnce() -> T) -> T {
    building(Build::Whole, f)
}

/// Runs `f` with only the top-level command `args` names, when it names one plainly; with all
/// of them otherwise (no command, help or version flags, a name that is not a command), so
/// that clap's own help and errors see every command. clap copies each global option into
/// every top-level command when it builds the tree, which for some thirty commands was most
/// of what building the tree still cost.
pub(crate) fn for_args<T>(args: &[OsString], f: impl FnOnce() -> T) -> T {
    match invoked(args) {
        Some(name) => building(Build::Only(name), f),
        None => f(),
    }
}

/// The global options that take a value as the next argument (`--db URL`).
pub(crate) const GLOBAL_VALUE_OPTIONS: &[&str] = &[
    "--db",
    "--config",
    "--env-file",
    "--log",
    "--url",
    "--token",
    "--log-format",
];

/// The top-level command `args` (the program name first) names: the first argument that is
/// not a global option or its value, when it is a command's name.
pub(crate) fn invoked(args: &[OsString]) -> Option<&'static str> {
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let arg = arg.to_str()?;
        if arg == "--" {
            return None;
        }
        if arg.starts_with("--") {
            if arg.contains('=') {
                continue;
            }
            if GLOBAL_VALUE_OPTIONS.contains(&arg) {
                rest.next()?;
                continue;
            }
            return None;
        }
        if arg.starts_with('-') {
            return None;
        }
        return crate::cli::Command::named(arg);
    }
    None
}

/// The one-line help clap's derive makes of a doc comment: the lines joined with spaces, and
/// a final period dropped.
pub(crate) fn summary(doc: &[&str]) -> String {
    let joined = doc
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match joined.strip_suffix('.') {
        Some(s) if !s.ends_with('.') => s.to_owned(),
        _ => joined,
    }
}

/// Declares the enum of top-level commands and implements clap's `Subcommand` and
/// `FromArgMatches` for it. Each entry is `/// help`, then `"name" => Variant(Type): kind`,
/// where `kind` is `args` for a type deriving `Args` and `subcommands` for one deriving
/// `Subcommand` (as `#[command(subcommand)]` would be).
macro_rules! top_level_commands {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $(
                $(#[doc = $doc:literal])*
                $name:literal => $variant:ident($inner:ty): $kind:ident,
            )*
        }
    ) => {
        $(#[$meta])*
        pub enum $enum {
            $( $(#[doc = $doc])* $variant($inner), )*
        }

        impl $enum {
            /// The command called `name`, if there is one, by its name as written here.
            pub(crate) fn named(name: &str) -> Option<&'static str> {
                match name {
                    $($name => Some($name),)*
                    _ => None,
                }
            }
        }

        impl ::clap::FromArgMatches for $enum {
            fn from_arg_matches(matches: &::clap::ArgMatches) -> Result<Self, ::clap::Error> {
                Self::from_arg_matches_mut(&mut matches.clone())
            }

            fn from_arg_matches_mut(
                matches: &mut ::clap::ArgMatches,
            ) -> Result<Self, ::clap::Error> {
                match matches.remove_subcommand() {
                    $(
                        Some((name, mut sub)) if name == $name => Ok(Self::$variant(
                            <$inner as ::clap::FromArgMatches>::from_arg_matches_mut(&mut sub)?,
                        )),
                    )*
                    Some((name, _)) => Err(::clap::Error::raw(
                        ::clap::error::ErrorKind::InvalidSubcommand,
                        format!("the subcommand '{name}' wasn't recognized"),
                    )),
                    None => Err(::clap::Error::raw(
                        ::clap::error::ErrorKind::MissingSubcommand,
                        "a subcommand is required",
                    )),
                }
            }

            fn update_from_arg_matches(
                &mut self,
                matches: &::clap::ArgMatches,
            ) -> Result<(), ::clap::Error> {
                *self = Self::from_arg_matches(matches)?;
                Ok(())
            }
        }

        impl ::clap::Subcommand for $enum {
            fn augment_subcommands(cmd: ::clap::Command) -> ::clap::Command {
                let mode = $crate::cli::deferred::build_mode();
                let whole = mode == $crate::cli::deferred::Build::Whole;
                let mut cmd = cmd;
                $(
                    if mode.includes($name) {
                        let build: fn(::clap::Command) -> ::clap::Command =
                            top_level_commands!(@build $kind $inner, [$($doc),*]);
                        let sub = ::clap::Command::new($name)
                            .about($crate::cli::deferred::summary(&[$($doc),*]));
                        cmd = cmd.subcommand(if whole { build(sub) } else { sub.defer(build) });
                    }
                )*
                cmd
            }

            fn augment_subcommands_for_update(cmd: ::clap::Command) -> ::clap::Command {
                Self::augment_subcommands(cmd)
            }

            fn has_subcommand(name: &str) -> bool {
                matches!(name, $($name)|*)
            }
        }
    };
    // The help is set again after the type's own methods, which may set a help of their own
    // from the type's doc comment: the variant's wins, as with the derive.
    (@build args $inner:ty, [$($doc:literal),*]) => {
        |cmd| {
            <$inner as ::clap::Args>::augment_args(cmd)
                .about($crate::cli::deferred::summary(&[$($doc),*]))
                .long_about(None)
        }
    };
    (@build subcommands $inner:ty, [$($doc:literal),*]) => {
        |cmd| {
            <$inner as ::clap::Subcommand>::augment_subcommands(cmd)
                .subcommand_required(true)
                .arg_required_else_help(true)
                .about($crate::cli::deferred::summary(&[$($doc),*]))
                .long_about(None)
        }
    };
}

pub(crate) use top_level_commands;

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use std::ffi::OsString;

    use super::{GLOBAL_VALUE_OPTIONS, expanded, for_args, invoked, summary};
    use crate::cli::{ClaimCommand, Cli, Command};

    /// A command's help, flags (in the order help shows them) and subcommands, recursively,
    /// as text to compare. The `help` command is left out: clap makes its subtree from the
    /// commands as they are before their deferred parts run, and `gaia help claim acquire`
    /// works either way (`a_deferred_command_parses_into_its_variant`).
    fn shape(cmd: &clap::Command, out: &mut Vec<String>, path: &str) {
        let path = format!("{path} {}", cmd.get_name());
        let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        out.push(format!("{path}: {about}"));
        let mut args: Vec<_> = cmd.get_arguments().collect();
        args.sort_by_key(|a| (a.get_display_order(), a.get_id().to_string()));
        for arg in args {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            out.push(format!("{path} --{}: {help}", arg.get_id()));
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            shape(sub, out, &path);
        }
    }

    #[test]
    fn the_deferred_tree_is_the_whole_tree() {
        Cli::command().debug_assert();
        let (mut deferred, mut whole) = (Cli::command(), expanded(Cli::command));
        deferred.build();
        whole.build();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        shape(&deferred, &mut a, "");
        shape(&whole, &mut b, "");
        assert!(a.len() > 300, "{} entries", a.len());
        let first = a.iter().zip(&b).position(|(x, y)| x != y);
        assert_eq!(
            (a.len(), first.map(|i| (&a[i], &b[i]))),
            (b.len(), None),
            "the deferred tree differs"
        );
        // The help of a top-level command is its variant's doc comment, as one line.
        assert!(
            a.contains(
                &" gaia todo: The tasks of a story's todolist: add, work, validate the final-task \
             rule, archive, finalize"
                    .to_owned()
            )
        );
    }

    #[test]
    fn the_global_options_with_values_are_all_known() {
        let cmd = Cli::command();
        let mut taking: Vec<String> = cmd
            .get_arguments()
            .filter(|a| a.is_global_set() && a.get_action().takes_values())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        taking.sort();
        let mut known: Vec<String> = GLOBAL_VALUE_OPTIONS.iter().map(|s| s.to_string()).collect();
        known.sort();
        assert_eq!(taking, known);
    }

    #[test]
    fn only_a_plainly_named_command_is_built_alone() {
        let args = |s: &str| -> Vec<OsString> { s.split(' ').map(OsString::from).collect() };
        let cases = [
            ("gaia claim acquire s --agent a", Some("claim")),
            (
                "gaia --db sqlite://x.db --log-format json claim list",
                Some("claim"),
            ),
            ("gaia --db=sqlite://x.db env-run -- true", Some("env-run")),
            ("gaia --help", None),
            ("gaia -V", None),
            ("gaia", None),
            ("gaia --db", None),
            ("gaia clam acquire", None),
            ("gaia help claim", None),
            ("gaia -- claim", None),
        ];
        for (line, expected) in cases {
            assert_eq!(invoked(&args(line)), expected, "{line}");
        }
        // Parsed with only that command or with all of them, the result is the same.
        for line in [
            "gaia --db sqlite://x.db claim acquire s1 --agent a1 --ttl 5m",
            "gaia claim acquire s1 --agent a1 --log debug --todolist t",
        ] {
            let a = args(line);
            let alone = for_args(&a, || Cli::try_parse_from(&a)).expect("parses alone");
            let whole = Cli::try_parse_from(&a).expect("parses");
            assert_eq!(format!("{alone:?}"), format!("{whole:?}"), "{line}");
        }
        let a = args("gaia claim acquire s1");
        let err = for_args(&a, || Cli::try_parse_from(&a)).expect_err("no agent");
        let whole = Cli::try_parse_from(&a).expect_err("no agent");
        assert_eq!(err.to_string(), whole.to_string());
    }

    #[test]
    fn a_deferred_command_parses_into_its_variant() {
        let cli = Cli::try_parse_from([
            "gaia",
            "--db",
            "sqlite://x.db",
            "claim",
            "acquire",
            "s1",
            "--agent",
            "a1",
        ])
        .expect("parses");
        assert_eq!(cli.db.as_deref(), Some("sqlite://x.db"));
        let Command::Claim(ClaimCommand::Acquire { target, agent, .. }) = cli.command else {
            panic!("not claim acquire: {:?}", cli.command);
        };
        assert_eq!((target.story.as_str(), agent.as_str()), ("s1", "a1"));
        let err = Cli::try_parse_from(["gaia", "claim"]).expect_err("needs a subcommand");
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        let err = Cli::try_parse_from(["gaia", "nope"]).expect_err("unknown");
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidSubcommand);
        let help = Cli::try_parse_from(["gaia", "help", "claim", "acquire"]).expect_err("help");
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(help.to_string().contains("--fingerprint"), "{help}");
    }

    #[test]
    fn summary_joins_lines_and_drops_the_final_period() {
        assert_eq!(
            summary(&[" The tasks of a story's todolist: add,", " finalize."]),
            "The tasks of a story's todolist: add, finalize"
        );
        assert_eq!(summary(&[" Wait..."]), "Wait...");
        assert_eq!(summary(&[" No period"]), "No period");
    }
}
