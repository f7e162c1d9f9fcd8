//! The committed shell completions (`completions/`) and man pages (`man/`) must match what the clap definition
//! generates today. Run `MAILCTL_BLESS=1 cargo test --test it generated_files` to rewrite them after a CLI change.

use std::collections::BTreeMap;
use std::path::Path;

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(e.path()).unwrap_or_default())
        })
        .collect()
}

fn check(name: &str, write: fn(&Path) -> std::io::Result<()>) {
    let committed = kit::repo_root().join(name);
    if std::env::var_os("MAILCTL_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&committed);
        write(&committed).expect("write generated files");
        return;
    }
    let fresh = tempfile::tempdir().expect("tempdir");
    write(fresh.path()).expect("generate files");
    let want = read_dir(fresh.path());
    let have = read_dir(&committed);
    assert!(!want.is_empty(), "nothing was generated for {name}/");
    let stale: Vec<&String> = want
        .keys()
        .chain(have.keys())
        .filter(|k| want.get(*k) != have.get(*k))
        .collect();
    assert!(
        stale.is_empty(),
        "{name}/ is stale ({stale:?}); run: MAILCTL_BLESS=1 cargo test --test it generated_files"
    );
}

#[test]
fn committed_completions_match_the_cli() {
    check("completions", mailctl::assets::write_completions);
}

#[test]
fn committed_man_pages_match_the_cli() {
    check("man", mailctl::assets::write_man_pages);
}

/// Checked on a freshly generated page (the committed one equals it, see above), so that blessing, which
/// rewrites `man/` while the other tests run, cannot race with this one.
#[test]
fn man_page_documents_exit_status() {
    let fresh = tempfile::tempdir().expect("tempdir");
    mailctl::assets::write_man_pages(fresh.path()).expect("generate man pages");
    let page = std::fs::read_to_string(fresh.path().join("mailctl.1")).unwrap_or_default();
    assert!(
        page.contains("Exit status"),
        "man/mailctl.1 lacks the exit status section"
    );
}
