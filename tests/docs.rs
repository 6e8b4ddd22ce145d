//! The documentation stays true to the code: the directive reference documents exactly the
//! module's directives, the quick start runs what CI runs, and relative links and their anchors
//! resolve. (Example configurations are checked with `nginx -t` in tests/examples.rs; the
//! Markdown lint is scripts/docs-check.sh.)

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names in `ngx_string!("...")` of every `[ngx_command_t; N]` array under src/: the
/// module's command table, wherever it is built.
fn command_table() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut names = BTreeSet::new();
    let mut tables = 0;
    for file in files {
        let text = read(&file);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("[ngx_command_t;") {
            let table = &rest[at..];
            let end = table
                .find("\n];")
                .unwrap_or_else(|| panic!("{}: unterminated command table", file.display()));
            let table = &table[..end];
            tables += 1;
            let mut items = table;
            while let Some(i) = items.find("ngx_string!(\"") {
                let name = &items[i + "ngx_string!(\"".len()..];
                let name = &name[..name.find('"').unwrap()];
                names.insert(name.to_string());
                items = &items[i + 1..];
            }
            rest = &rest[at + end..];
        }
    }
    assert!(tables > 0, "no `[ngx_command_t; N]` array found under src/");
    assert!(
        names.len() > 10 && names.contains("phantom_token"),
        "the command table under src/ looks wrong: {names:?}"
    );
    names
}

/// Lines outside fenced code blocks, with their line numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((n + 1, line));
        }
    }
    out
}

#[test]
fn directive_reference_matches_the_command_table() {
    let code = command_table();
    let page = root().join("docs/directives.md");
    let documented: BTreeSet<String> = prose(&read(&page))
        .into_iter()
        .filter_map(|(_, l)| l.strip_prefix("## "))
        .map(|h| h.trim().to_string())
        .collect();
    let undocumented: Vec<_> = code.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&code).collect();
    let mut problems = String::new();
    if !undocumented.is_empty() {
        problems += &format!(
            "\nDirectives in the module's command table without a `## <name>` section in \
             docs/directives.md (add one: Syntax, Default, Context, what it does, its nginx -t \
             errors): {undocumented:?}"
        );
    }
    if !unknown.is_empty() {
        problems += &format!(
            "\n`## ` headings in docs/directives.md that are not directives in the module's \
             command table (removed or misspelt?): {unknown:?}"
        );
    }
    assert!(problems.is_empty(), "{problems}");
}

#[test]
fn every_directive_section_has_syntax_default_and_context() {
    let text = read(&root().join("docs/directives.md"));
    let mut sections: Vec<(String, String)> = Vec::new();
    for (_, line) in prose(&text) {
        if let Some(h) = line.strip_prefix("## ") {
            sections.push((h.trim().to_string(), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    for (name, body) in &sections {
        for field in ["**Syntax:**", "**Default:**", "**Context:**"] {
            assert!(
                body.contains(field),
                "docs/directives.md: section `{name}` has no {field} line"
            );
        }
        assert!(
            body.contains(&format!("`{name}")),
            "docs/directives.md: the Syntax of `{name}` does not name the directive"
        );
    }
}

/// The README's quick start: its test command is the one `.ci/run` runs, and its commands exist.
#[test]
fn quick_start_runs_what_ci_runs() {
    let readme = read(&root().join("README.md"));
    let start = readme
        .find("## Quick start")
        .expect("README.md has no `## Quick start` section");
    let section = &readme[start..];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the quick start has no ```sh block");
    let commands: Vec<&str> = block
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        ["scripts/demo.sh", "scripts/test.sh"],
        "the quick start's two commands changed: update this test and .ci/run together"
    );
    for c in &commands {
        assert!(root().join(c).is_file(), "quick start: {c} does not exist");
    }
    let ci = read(&root().join(".ci/run"));
    assert!(
        ci.lines().any(|l| l.trim() == "scripts/test.sh"),
        ".ci/run does not run scripts/test.sh, the README's test command"
    );
}

/// The Markdown files whose links are checked.
fn documents() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "CHANGELOG.md",
        "SECURITY.md",
    ]
    .iter()
    .map(|f| root().join(f))
    .filter(|p| p.exists())
    .collect();
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Files that other work creates and the documentation links already: accepted while absent,
/// checked like any other once they exist.
const PENDING: &[&str] = &["ARCHITECTURE.md"];

/// GitHub's anchor for a heading: the rendered text, lowercased, without punctuation other
/// than `-` and `_`, spaces turned into `-`.
fn slug(heading: &str) -> String {
    // Rendered text: `[text](url)` -> text, code and emphasis markers dropped.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match (after.find("]("), after.find(')')) {
            (Some(close), Some(paren)) if paren > close => {
                text.push_str(&after[..close]);
                rest = &after[paren + 1..];
            }
            _ => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings, with GitHub's `-1`, `-2` for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose(text) {
        let trimmed = line.trim_start_matches('#');
        if trimmed.len() == line.len() || !trimmed.starts_with(' ') {
            continue;
        }
        let base = slug(trimmed);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of inline links `[text](target)` in prose, outside code spans.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text) {
        // Drop code spans: `...` never holds a link.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let target = &rest[at + 2..];
            let end = target.find(')').unwrap_or(target.len());
            let target = target[..end].split_whitespace().next().unwrap_or("");
            out.push((n, target.to_string()));
            rest = &rest[at + 2..];
        }
    }
    out
}

#[test]
fn relative_links_and_anchors_resolve() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in documents() {
        let text = read(&file);
        let name = file.strip_prefix(root()).unwrap().display().to_string();
        for (line, target) in links(&text) {
            if target.is_empty()
                || target.contains("://")
                || target.starts_with("mailto:")
                || target.starts_with('<')
            {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !dest.exists() {
                let pending = dest
                    .strip_prefix(root())
                    .is_ok_and(|p| PENDING.iter().any(|f| p == Path::new(f)));
                if !pending {
                    problems.push(format!("{name}:{line}: `{target}`: no such file"));
                }
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if dest.extension().is_none_or(|e| e != "md") {
                continue; // anchors into code files are line numbers, not headings
            }
            if !anchors(&read(&dest)).contains(anchor) {
                problems.push(format!(
                    "{name}:{line}: `{target}`: {} has no heading with the anchor #{anchor}",
                    dest.strip_prefix(root()).unwrap_or(&dest).display()
                ));
            }
        }
    }
    assert!(
        checked > 50,
        "expected many relative links, found {checked}"
    );
    assert!(
        problems.is_empty(),
        "broken links in the documentation:\n{}",
        problems.join("\n")
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug("Failure behaviour: Redis never fails a request"),
        "failure-behaviour-redis-never-fails-a-request"
    );
    assert_eq!(
        slug("Other access checks and `satisfy any`"),
        "other-access-checks-and-satisfy-any"
    );
    assert_eq!(slug("phantom_token_cache_zone"), "phantom_token_cache_zone");
    assert_eq!(
        slug("Sender-constrained tokens: DPoP and client certificates"),
        "sender-constrained-tokens-dpop-and-client-certificates"
    );
    assert_eq!(slug("[0.1.0] - 2026-01-01"), "010---2026-01-01");
    let a = anchors("# A\n## Notes\n```\n## not a heading\n```\n### Notes\n");
    assert!(a.contains("notes") && a.contains("notes-1") && !a.contains("not-a-heading"));
}
