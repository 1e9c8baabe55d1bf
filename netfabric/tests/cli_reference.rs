//! The CLI reference checked into `docs/` is generated from the clap command
//! line: a man page per command and subcommand (`docs/man/man1/`, so
//! `MANPATH=docs/man man netfabric-agent` reads it) and shell completions
//! for bash, zsh and fish (`docs/completions/`). These tests regenerate them
//! in memory and fail when a checked-in copy differs, is missing or is left
//! over; with `NETFABRIC_BLESS=1` they rewrite the copies instead
//! (`cargo xtask cli-docs`).
//!
//! The reference is only useful if it can be reached: every relative link of
//! the README, ARCHITECTURE.md and `docs/*.md`, and every `docs/<page>.md#<anchor>`
//! cited in the code, must name an existing file and heading.

use std::{
    collections::{BTreeMap, BTreeSet},
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

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the workspace")
        .to_path_buf()
}

/// GitHub's anchor of a heading: lowercase, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The Markdown of `text` outside fenced code blocks.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The anchors of the headings of a Markdown file.
fn anchors(path: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    prose(&text)
        .lines()
        .filter_map(|l| {
            let title = l.trim_start_matches('#');
            (title.len() < l.len() && title.starts_with(' ')).then(|| anchor(title))
        })
        .collect()
}

/// Whether `target` (a path relative to `from_dir`, with an optional
/// `#anchor`) exists; `Err` says what is wrong.
fn resolve(from_dir: &Path, target: &str) -> Result<(), String> {
    let (path, fragment) = match target.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (target, None),
    };
    let file = from_dir.join(path);
    if !file.exists() {
        return Err(format!("{target}: no such file"));
    }
    match fragment {
        Some(f) if !anchors(&file).contains(f) => Err(format!("{target}: no heading #{f}")),
        _ => Ok(()),
    }
}

/// The relative link targets `](target)` of a Markdown text.
fn markdown_links(text: &str) -> Vec<String> {
    prose(text)
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split([')', ' ']).next())
        .filter(|t| !t.is_empty() && !t.contains("://") && !t.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_docs_links_resolve() {
    let root = repo_root();
    let mut pages = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for entry in fs::read_dir(root.join("docs")).expect("listing docs/") {
        let path = entry.expect("a docs entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = fs::read_to_string(page).expect("reading a page");
        let dir = page.parent().expect("a page has a directory");
        for target in markdown_links(&text) {
            if let Err(e) = resolve(dir, &target) {
                broken.push(format!("{}: {e}", page.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken links:\n  {}",
        broken.join("\n  ")
    );
}

/// Code comments cite the documentation as `docs/<page>.md#<anchor>`.
#[test]
fn the_code_cites_existing_docs_sections() {
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    rust_files(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = repo_root();
    let mut files = Vec::new();
    for krate in [
        "netfabric",
        "netfabric-common",
        "netfabric-ebpf",
        "tests",
        "xtask",
    ] {
        rust_files(&root.join(krate), &mut files);
    }
    let mut broken = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("reading a source file");
        for (i, _) in text.match_indices("docs/") {
            let cited: String = text[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '/' | '.' | '#' | '-' | '_'))
                .collect();
            let cited = cited.trim_end_matches('.');
            if cited.contains(".md")
                && let Err(e) = resolve(&root, cited)
            {
                broken.push(format!("{}: {e}", file.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "code cites missing docs:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn anchors_follow_github() {
    assert_eq!(anchor(" Decision order"), "decision-order");
    assert_eq!(anchor("from_container"), "from_container");
    assert_eq!(anchor("Backup and restore"), "backup-and-restore");
    assert_eq!(anchor("Store URLs"), "store-urls");
    assert_eq!(
        markdown_links("see [a](x.md#b) and [c](https://e)\n```\n[d](y.md)\n```\n"),
        ["x.md#b"]
    );
}
