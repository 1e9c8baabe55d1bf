//! The CLI reference checked into `docs/` is generated from the clap command
//! line: a man page per command and subcommand (`docs/man/man1/`, so
//! `MANPATH=docs/man man netfabric-agent` reads it) and shell completions
//! for bash, zsh and fish (`docs/completions/`). These tests regenerate them
//! in memory and fail when a checked-in copy differs, is missing or is left
//! over; with `NETFABRIC_BLESS=1` they rewrite the copies instead
//! (`cargo xtask cli-docs`).

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use clap::CommandFactory as _;
use clap_complete::Shell;
use netfabric::cli::Cli;

const BLESS_VAR: &str = "NETFABRIC_BLESS";
const REGENERATE: &str = "regenerate with `cargo xtask cli-docs` (or NETFABRIC_BLESS=1 cargo test -p netfabric --test cli_reference) and commit the result";

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn blessing() -> bool {
    std::env::var(BLESS_VAR).is_ok_and(|v| v == "1")
}

/// Every man page of the command tree, by file name (`netfabric-zone-create.1`).
fn man_pages() -> BTreeMap<String, Vec<u8>> {
    fn render(cmd: clap::Command, pages: &mut BTreeMap<String, Vec<u8>>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            render(sub, pages);
        }
        let man = clap_mangen::Man::new(cmd);
        let mut page = Vec::new();
        man.render(&mut page).expect("rendering a man page");
        pages.insert(man.get_filename(), page);
    }
    // As clap_mangen::generate_to: `help` is not a page of its own, and a
    // built command gives subcommands their full names (netfabric-zone-create).
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = BTreeMap::new();
    render(cmd, &mut pages);
    pages
}

/// The completion scripts, by the file name each shell looks for.
fn completions() -> BTreeMap<String, Vec<u8>> {
    [
        (Shell::Bash, "netfabric.bash"),
        (Shell::Zsh, "_netfabric"),
        (Shell::Fish, "netfabric.fish"),
    ]
    .into_iter()
    .map(|(shell, file)| {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "netfabric", &mut script);
        (file.to_owned(), script)
    })
    .collect()
}

/// The files of `dir` (not recursive), by name.
fn checked_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.expect("listing a docs directory"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            let name = e.file_name().into_string().expect("a UTF-8 file name");
            let bytes = fs::read(e.path()).expect("reading a checked-in copy");
            (name, bytes)
        })
        .collect()
}

/// The names that differ between what is generated and what is checked in.
fn differences(
    generated: &BTreeMap<String, Vec<u8>>,
    on_disk: &BTreeMap<String, Vec<u8>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, bytes) in generated {
        match on_disk.get(name) {
            None => out.push(format!("{name}: missing")),
            Some(old) if old != bytes => out.push(format!("{name}: out of date")),
            Some(_) => {}
        }
    }
    for name in on_disk.keys().filter(|n| !generated.contains_key(*n)) {
        out.push(format!("{name}: no longer generated"));
    }
    out
}

/// Compares `dir` with `generated`, or rewrites it when blessing.
fn check_or_bless(dir: &Path, generated: &BTreeMap<String, Vec<u8>>) {
    let on_disk = checked_in(dir);
    if blessing() {
        fs::create_dir_all(dir).expect("creating a docs directory");
        for name in on_disk.keys().filter(|n| !generated.contains_key(*n)) {
            fs::remove_file(dir.join(name)).expect("removing a stale copy");
        }
        for (name, bytes) in generated {
            fs::write(dir.join(name), bytes).expect("writing a generated copy");
        }
        return;
    }
    let diff = differences(generated, &on_disk);
    assert!(
        diff.is_empty(),
        "the CLI reference in {} does not match the command line:\n  {}\n{REGENERATE}",
        dir.display(),
        diff.join("\n  ")
    );
}

#[test]
fn man_pages_are_current() {
    let pages = man_pages();
    // One page per command of the tree, and the tree's leaves are in it.
    for page in [
        "netfabric.1",
        "netfabric-agent.1",
        "netfabric-zone-create.1",
        "netfabric-container-attach.1",
        "netfabric-maps-dump.1",
        "netfabric-lab-up.1",
    ] {
        assert!(pages.contains_key(page), "{page} was not generated");
    }
    check_or_bless(&docs_dir().join("man/man1"), &pages);
}

#[test]
fn completions_are_current() {
    let scripts = completions();
    for (file, needle) in [
        ("netfabric.bash", "--host-netns"),
        ("_netfabric", "--metrics-addr"),
        ("netfabric.fish", "detach-on-exit"),
    ] {
        let script = String::from_utf8_lossy(&scripts[file]);
        assert!(script.contains(needle), "{file} lacks {needle}");
    }
    check_or_bless(&docs_dir().join("completions"), &scripts);
}

/// `docs/cli.md` names every man page, so a new subcommand gets a line there.
#[test]
fn the_cli_guide_lists_every_page() {
    let guide = fs::read_to_string(docs_dir().join("cli.md")).expect("reading docs/cli.md");
    let missing: Vec<String> = man_pages()
        .into_keys()
        .filter(|page| !guide.contains(&format!("man/man1/{page}")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/cli.md does not link these man pages: {missing:?}"
    );
}

#[test]
fn a_stale_copy_is_reported() {
    let generated = BTreeMap::from([
        ("a.1".to_owned(), b"new".to_vec()),
        ("b.1".to_owned(), b"same".to_vec()),
    ]);
    let on_disk = BTreeMap::from([
        ("a.1".to_owned(), b"old".to_vec()),
        ("b.1".to_owned(), b"same".to_vec()),
        ("c.1".to_owned(), b"gone".to_vec()),
    ]);
    assert_eq!(
        differences(&generated, &on_disk),
        ["a.1: out of date", "c.1: no longer generated"]
    );
    assert_eq!(
        differences(&generated, &BTreeMap::new()),
        ["a.1: missing", "b.1: missing"]
    );
}
