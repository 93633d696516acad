//! The man page, generated from the clap definitions so it cannot fall behind the
//! commands: clap_mangen renders the root page (name, synopsis, description, options),
//! then one `COMMANDS` subsection per subcommand at every depth (its synopsis, what it
//! does, its options), the exit statuses from `EXIT_STATUSES`, and last the prose no
//! clap definition holds (configuration, files, environment, signals) from `man.roff`.
//! `hookd man` prints it; packaging/hookd.1 is that output, and a test keeps the two
//! equal.

use std::io::{self, Write};

use clap::{Command, CommandFactory};
use clap_mangen::Man;

use super::{Cli, EXIT_STATUSES};

/// Hand-written sections, appended after the generated ones.
const PROSE: &str = include_str!("man.roff");

/// The complete hookd(1) page in roff.
pub fn man_page() -> io::Result<Vec<u8>> {
    let mut root = Cli::command();
    // Sets every subcommand's bin name ("hookd subscription create") and propagates
    // global arguments, which the subsections show.
    root.build();
    let mut page = Vec::new();
    let man = Man::new(root.clone()).title("HOOKD");
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    page.write_all(b".SH COMMANDS\n")?;
    for command in visible(&root) {
        command_section(&mut page, command, &[])?;
    }
    page.write_all(b".SH \"EXIT STATUS\"\n")?;
    for (code, meaning) in EXIT_STATUSES {
        writeln!(page, ".TP\n.B {code}\n{}", text(meaning))?;
    }
    page.write_all(PROSE.as_bytes())?;
    Ok(page)
}

/// The subcommands a user may call (not `help`, not hidden ones such as `man`).
fn visible(command: &Command) -> impl Iterator<Item = &Command> {
    command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
}

/// `.SS hookd <path>`, its description, synopsis and options, then its subcommands'.
/// A global option is described once, where it is defined (`hookd subscription`), not
/// again under every subcommand it propagates to; `--help` is left to the root.
fn command_section(page: &mut Vec<u8>, command: &Command, inherited: &[String]) -> io::Result<()> {
    let own = command.clone().mut_args(|arg| {
        let id = arg.get_id().as_str();
        if id == "help" || inherited.iter().any(|i| i == id) {
            arg.hide(true)
        } else {
            arg
        }
    });
    let man = Man::new(own.clone());
    let name = command.get_bin_name().unwrap_or(command.get_name());
    writeln!(page, ".SS \"{}\"", text(name))?;
    page.extend(body(|w| man.render_description_section(w))?);
    page.write_all(b".PP\n")?;
    page.extend(body(|w| man.render_synopsis_section(w))?);
    if own.get_arguments().any(|arg| !arg.is_hide_set()) {
        page.extend(body(|w| man.render_options_section(w))?);
    }
    let mut below = inherited.to_vec();
    below.extend(
        command
            .get_arguments()
            .filter(|arg| arg.is_global_set())
            .map(|arg| arg.get_id().to_string()),
    );
    for sub in visible(command) {
        command_section(page, sub, &below)?;
    }
    Ok(())
}

/// A section clap_mangen renders, without its `.SH` heading (inside `COMMANDS` it is
/// part of a subsection) and without the string definition it repeats before each
/// section (the root page's sections have already made it).
fn body(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    render(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let mut heading_seen = false;
    let mut kept = String::new();
    for line in text.lines() {
        let preamble = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        let heading = !heading_seen && line.starts_with(".SH ");
        heading_seen |= heading;
        if !preamble && !heading {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    Ok(kept.into_bytes())
}

/// Plain text as roff: backslashes escaped, hyphens as hyphens, and a line that would
/// start with a control character made literal.
fn text(plain: &str) -> String {
    let escaped = plain.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> String {
        String::from_utf8(man_page().unwrap()).unwrap()
    }

    /// Every visible command path below `command`, as "hookd subscription create".
    fn paths(command: &Command, prefix: &str, out: &mut Vec<String>) {
        for sub in visible(command) {
            let path = format!("{prefix} {}", sub.get_name());
            out.push(path.clone());
            paths(sub, &path, out);
        }
    }

    #[test]
    fn the_page_has_a_section_for_every_subcommand_and_every_exit_status() {
        let page = page();
        let mut all = Vec::new();
        paths(&Cli::command(), "hookd", &mut all);
        assert!(all.len() > 20, "{all:?}");
        for path in all {
            let heading = format!(".SS \"{}\"\n", text(&path));
            assert!(page.contains(&heading), "no section for {path}");
        }
        assert!(!page.contains(".SS \"hookd man\""), "man is hidden");
        let exit = &page[page.find(".SH \"EXIT STATUS\"").unwrap()..];
        for code in [0, super::super::EX_FAILURE, 64, 75, 78] {
            assert!(exit.contains(&format!(".TP\n.B {code}\n")), "exit {code}");
        }
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "ENVIRONMENT"] {
            assert!(page.contains(&format!(".SH {section}\n")), "{section}");
        }
        assert!(page.contains("HOOKD_CONFIG"));
    }

    #[test]
    fn a_global_option_is_described_where_it_is_defined_only() {
        let page = page();
        let section = |path: &str| {
            let start = page.find(&format!(".SS \"{path}\"")).unwrap();
            let rest = &page[start + 4..];
            rest[..rest.find(".SS ").unwrap_or(rest.len())].to_owned()
        };
        assert!(section("hookd subscription").contains("\\-\\-cacert"));
        let create = section("hookd subscription create");
        assert!(create.contains("\\-\\-endpoint"), "{create}");
        assert!(!create.contains("\\-\\-cacert"), "{create}");
    }

    #[test]
    fn the_packaged_man_page_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/hookd.1");
        let committed = std::fs::read_to_string(path).unwrap();
        assert!(
            committed == page(),
            "packaging/hookd.1 is out of date: run `cargo run -- man > packaging/hookd.1`"
        );
    }

    #[test]
    fn text_is_escaped_for_roff() {
        assert_eq!(text("a-b"), "a\\-b");
        assert_eq!(text(".x"), "\\&.x");
        assert_eq!(text("back\\slash"), "back\\eslash");
    }
}
