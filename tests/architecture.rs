//! The module map of ARCHITECTURE.md, checked: each module of `src/` names (`crate::...`) only
//! the modules it may depend on, so dependencies point down and nothing depends on `cli`.

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module and the modules it may use, as ARCHITECTURE.md draws them.
const ALLOWED: &[(&str, &[&str])] = &[
    ("wal", &[]),
    ("event", &["wal"]),
    ("config", &["event"]),
    ("state", &["event"]),
    ("journal", &["wal", "event", "state", "config"]),
    ("db", &["config", "event"]),
    ("error", &["config", "db", "journal", "state", "wal"]),
    (
        "engine",
        &["config", "db", "error", "event", "journal", "state", "wal"],
    ),
    (
        "ops",
        &[
            "config", "db", "engine", "error", "event", "journal", "state", "wal",
        ],
    ),
    ("hooks", &["config", "journal", "state"]),
    ("cli", &["config", "engine", "error", "hooks", "ops", "wal"]),
];

/// The `crate::NAME` paths in the code (not the comments) of a file or directory.
fn named_modules(path: &Path, found: &mut BTreeSet<String>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            named_modules(&entry.unwrap().path(), found);
        }
        return;
    }
    let text = std::fs::read_to_string(path).unwrap();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
}

#[test]
fn modules_depend_only_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut listed = BTreeSet::new();
    for (module, allowed) in ALLOWED {
        listed.insert(module.to_string());
        let dir = src.join(module);
        let path = if dir.is_dir() {
            dir
        } else {
            src.join(format!("{module}.rs"))
        };
        let mut named = BTreeSet::new();
        named_modules(&path, &mut named);
        named.remove(*module);
        let forbidden: Vec<&String> = named
            .iter()
            .filter(|n| !allowed.contains(&n.as_str()))
            .collect();
        assert!(
            forbidden.is_empty(),
            "{module} uses {forbidden:?}, which ARCHITECTURE.md does not allow it"
        );
    }
    // Every module of the crate is on the map.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect();
    assert_eq!(declared, listed, "src/lib.rs modules vs the map");
}
