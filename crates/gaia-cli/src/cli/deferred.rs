//! The top-level commands, each built only when it is the one being run.
//!
//! clap's derive builds every command, flag and help text before it parses anything. Gaia has
//! some thirty commands and hundreds of flags, and building (then dropping) all of them was
//! about a quarter of the instructions a short command like `gaia claim acquire` runs in all.
//! [`top_level_commands!`] declares the top-level enum instead: each command's name and
//! one-line help are set at once, and its flags and subcommands through clap's `defer`, which
//! runs when clap reaches that command. Help and errors see the same tree as before.
//! Completion scripts are generated from the whole tree built at once ([`expanded`]): clap
//! makes the `help` command's subtree from the commands as they are when it builds their
//! parent, before it runs their deferred parts.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether top-level commands are being built whole rather than deferred.
static EXPANDED: AtomicBool = AtomicBool::new(false);

/// Runs `f` with every top-level command built at once, for a caller that needs the whole
/// tree as it is before clap builds it (completion scripts).
pub(crate) fn expanded<T>(f: impl FnOnce() -> T) -> T {
    EXPANDED.store(true, Ordering::Relaxed);
    let out = f();
    EXPANDED.store(false, Ordering::Relaxed);
    out
}

pub(crate) fn is_expanded() -> bool {
    EXPANDED.load(Ordering::Relaxed)
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
                let whole = $crate::cli::deferred::is_expanded();
                cmd $(
                    .subcommand({
                        let build: fn(::clap::Command) -> ::clap::Command =
                            top_level_commands!(@build $kind $inner, [$($doc),*]);
                        let sub = ::clap::Command::new($name)
                            .about($crate::cli::deferred::summary(&[$($doc),*]));
                        if whole { build(sub) } else { sub.defer(build) }
                    })
                )*
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

    use super::{expanded, summary};
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
