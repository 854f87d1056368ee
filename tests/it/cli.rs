//! The command line as a user meets it: help, checks, inputs, exit codes.

use crate::support::Project;

const ECHO: &str = r#"
fn process(doc) {
    #{ id: doc.id, kind: doc.kind, name: doc.name, chars: doc.text.len(), meta: doc.meta }
}
"#;

#[test]
fn help_explains_every_flag() {
    let p = Project::new();
    let out = p
        .hybrid(&["run", "--help"])
        .output()
        .expect_code(0)
        .stdout();
    for flag in [
        "--out",
        "--jobs",
        "--schemas",
        "--cloud-url",
        "--local-model",
        "--local-url",
        "--isq",
        "--config",
    ] {
        assert!(out.contains(flag), "`{flag}` missing from help:\n{out}");
    }
}

#[test]
fn files_directories_and_jsonl_become_one_record_each() {
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    p.write("in/a.txt", "hola mundo");
    p.write("in/b.md", "# title");
    p.write("in/.hidden", "skip me");
    p.write("more.jsonl", "{\"id\": \"j1\", \"text\": \"uno\", \"lang\": \"es\"}\n{\"id\": \"j2\", \"text\": \"dos\"}\n");
    let done = p
        .hybrid(&["run", "scripts/echo.rhai", "in", "more.jsonl"])
        .output()
        .expect_code(0);
    let records = done.records();
    assert_eq!(records.len(), 4, "{}", done.stdout());
    let a = done.record("in/a.txt");
    assert_eq!(a["ok"], true);
    assert_eq!(a["result"]["kind"], "txt");
    assert_eq!(a["result"]["chars"], 10);
    assert!(a["version"].as_str().unwrap().starts_with('v'));
    assert_eq!(done.record("j1")["result"]["meta"]["lang"], "es");
    assert!(
        done.stderr().contains("4 documents: 4 ok, 0 failed"),
        "{}",
        done.stderr()
    );
}

#[test]
fn stdin_jsonl_and_out_file() {
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    let done = p
        .hybrid(&["run", "scripts/echo.rhai", "-", "--out", "results.jsonl"])
        .stdin("{\"id\": 1, \"text\": \"a\"}\n{\"id\": 2, \"text\": \"bb\"}\n")
        .output()
        .expect_code(0);
    assert_eq!(done.stdout(), "", "data goes to --out, not stdout");
    let written = std::fs::read_to_string(p.path("results.jsonl")).unwrap();
    assert_eq!(written.lines().count(), 2);
}

#[test]
fn bad_documents_are_error_records_and_exit_code_2() {
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    p.write("in/good.txt", "fine");
    p.write("in/binary.txt", b"\x00\x01\x02\x03");
    p.write("in/empty.txt", "");
    p.write("in/latin1.txt", b"ni\xf1o");
    p.write(
        "in/lines.jsonl",
        "{\"id\": \"ok\", \"text\": \"x\"}\n{broken\n",
    );
    let done = p
        .hybrid(&["run", "scripts/echo.rhai", "in"])
        .output()
        .expect_code(2);
    assert_eq!(done.records().len(), 6);
    assert_eq!(done.record("in/good.txt")["ok"], true);
    assert_eq!(done.record("ok")["ok"], true);
    for (id, reason) in [
        ("in/binary.txt", "binary"),
        ("in/empty.txt", "empty"),
        ("in/latin1.txt", "UTF-8"),
        ("in/lines.jsonl:2", "not JSON"),
    ] {
        let r = done.record(id);
        assert_eq!(r["ok"], false);
        assert_eq!(r["error"]["kind"], "input");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(reason),
            "{r}"
        );
    }
}

#[test]
fn start_up_errors_exit_1_with_a_hint() {
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    let done = p
        .hybrid(&["run", "scripts/echo.rhai", "nope/"])
        .output()
        .expect_code(1);
    assert!(
        done.stderr().contains("`nope/` does not exist"),
        "{}",
        done.stderr()
    );
    assert!(done.stderr().contains("hint:"));
    p.write("x.txt", "x");
    let done = p
        .hybrid(&["run", "scripts/missing.rhai", "x.txt"])
        .output()
        .expect_code(1);
    assert!(
        done.stderr().contains("scripts/missing.rhai"),
        "{}",
        done.stderr()
    );
    // One message, one hint: the OS error is said once.
    assert_eq!(
        done.stderr().matches("No such file").count(),
        1,
        "{}",
        done.stderr()
    );
    p.write("hybrid.toml", "[cloud]\ntimeout = 3\n");
    let done = p
        .hybrid(&["check", "scripts/echo.rhai"])
        .output()
        .expect_code(1);
    assert!(done.stderr().contains("hybrid.toml"), "{}", done.stderr());
    assert!(done.stderr().contains("timeout"), "{}", done.stderr());
}

#[test]
fn usage_errors_exit_1_not_the_some_documents_failed_code() {
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    for args in [
        &["run", "scripts/echo.rhai", "-", "--no-such-flag"][..],
        &["frobnicate"][..],
        &[][..],
        &["run", "scripts/echo.rhai", "-", "--cloud", "sometimes"][..],
    ] {
        let done = p.hybrid(args).output();
        assert_eq!(done.code(), 1, "{args:?}: {}", done.stderr());
    }
    p.hybrid(&["--help"]).output().expect_code(0);
    p.hybrid(&["--version"]).output().expect_code(0);
}

#[test]
fn a_reader_that_goes_away_ends_the_run_quietly() {
    use std::io::{BufRead, Write};
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    let input: String = (0..5000)
        .map(|i| format!("{{\"id\": \"d{i}\"}}\n"))
        .collect();
    let mut cmd = p
        .hybrid(&["run", "scripts/echo.rhai", "-", "--jobs", "1"])
        .cmd;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    // `hybrid run ... | head -1`: read one line and go away.
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("\"id\":\"d0\""), "{first}");
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn logs_have_no_colour_escapes_unless_asked() {
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    let run = |extra: &[&str], no_color: bool| {
        let mut args = vec!["run", "scripts/echo.rhai", "-"];
        args.extend_from_slice(extra);
        let mut run = p.hybrid(&args).stdin("{\"id\": \"a\"}\n");
        if no_color {
            run = run.env("NO_COLOR", "1");
        }
        run.output().expect_code(0).stderr()
    };
    assert!(!run(&[], true).contains('\u{1b}'));
    assert!(!run(&["--color", "never"], false).contains('\u{1b}'));
    assert!(run(&["--color", "always"], true).contains('\u{1b}'));
}

#[test]
fn check_reports_syntax_errors_with_file_line_col_and_hint() {
    let p = Project::new();
    p.write(
        "scripts/bad.rhai",
        "fn process(doc) {\n    let x = (1 + ;\n}\n",
    );
    let done = p
        .hybrid(&["check", "scripts/bad.rhai"])
        .output()
        .expect_code(1);
    let err = done.stderr();
    assert!(err.contains("scripts/bad.rhai:2:"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    // The offending line, with a caret under the column the position names.
    let col: usize = err
        .split("scripts/bad.rhai:2:")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    let lines: Vec<&str> = err.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "2 |     let x = (1 + ;")
        .unwrap_or_else(|| panic!("no source line in:\n{err}"));
    assert_eq!(
        lines[at + 1].find('^'),
        Some("2 | ".len() + col - 1),
        "{err}"
    );
}

#[test]
fn a_failed_document_carries_its_line_of_script() {
    let p = Project::new();
    p.write(
        "scripts/div.rhai",
        "fn process(doc) {\n    let n = doc.text.len();\n    n / 0\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/div.rhai", "-"])
        .stdin("{\"id\": \"a\", \"text\": \"x\"}\n")
        .output()
        .expect_code(2);
    let error = &done.record("a")["error"];
    assert_eq!(
        error["position"], "scripts/div.rhai:3:7",
        "machine-readable: {error}"
    );
    let snippet = error["snippet"]
        .as_str()
        .unwrap_or_else(|| panic!("{error}"));
    assert_eq!(snippet, "  |\n3 |     n / 0\n  |       ^", "{error}");
}

#[test]
fn check_catches_unknown_schema_names_and_missing_imports() {
    let p = Project::new();
    p.write("schemas/known.json", r#"{"type": "object"}"#);
    p.write(
        "scripts/typo.rhai",
        "fn process(doc) {\n    local(doc.text, \"knwon\")\n}\n",
    );
    let err = p
        .hybrid(&["check", "scripts/typo.rhai"])
        .output()
        .expect_code(1)
        .stderr();
    assert!(err.contains("scripts/typo.rhai:2:21"), "{err}");
    assert!(err.contains("unknown schema `knwon`"), "{err}");
    assert!(err.contains("known schemas: known"), "{err}");

    p.write(
        "scripts/opts.rhai",
        "fn process(doc) {\n    cloud(#{ prompt: \"x\", schema: \"nope\" })\n}\n",
    );
    let err = p
        .hybrid(&["check", "scripts/opts.rhai"])
        .output()
        .expect_code(1)
        .stderr();
    assert!(err.contains("unknown schema `nope`"), "{err}");

    p.write(
        "scripts/imp.rhai",
        "// rules\nimport \"lib/missing\" as m;\nfn process(doc) { 1 }\n",
    );
    let err = p
        .hybrid(&["check", "scripts/imp.rhai"])
        .output()
        .expect_code(1)
        .stderr();
    assert!(
        err.contains("scripts/imp.rhai:2:1: cannot find module `lib/missing`"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn check_reports_errors_inside_imported_modules_at_their_own_file() {
    let p = Project::new();
    p.write("scripts/lib/rules.rhai", "fn threshold() {\n  0.75 +\n}\n");
    p.write(
        "scripts/main.rhai",
        "import \"lib/rules\" as rules;\nfn process(doc) { rules::threshold() }\n",
    );
    let err = p
        .hybrid(&["check", "scripts/main.rhai"])
        .output()
        .expect_code(1)
        .stderr();
    assert!(err.contains("lib/rules.rhai:"), "{err}");
}

#[test]
fn check_passes_a_good_script_and_names_its_version() {
    let p = Project::new();
    p.write("schemas/a.json", r#"{"type": "object"}"#);
    p.write(
        "scripts/lib/rules.rhai",
        "const LIMIT = 3;\nfn limit() { LIMIT }\n",
    );
    p.write("scripts/ok.rhai", "import \"lib/rules\" as rules;\nimport \"hybrid/text\" as text;\nfn process(doc) { validate(#{}, \"a\") }\n");
    let out = p
        .hybrid(&["check", "scripts/ok.rhai"])
        .output()
        .expect_code(0)
        .stdout();
    assert!(out.contains("ok (v"), "{out}");
    assert!(out.contains("schemas: a"), "{out}");
}

#[test]
fn a_script_without_process_is_rejected() {
    let p = Project::new();
    p.write("scripts/none.rhai", "fn handle(doc) { 1 }\n");
    let err = p
        .hybrid(&["check", "scripts/none.rhai"])
        .output()
        .expect_code(1)
        .stderr();
    assert!(err.contains("no `fn process(doc)`"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_file_name_that_is_not_utf8_is_an_error_record() {
    use std::os::unix::ffi::OsStrExt;
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    p.write("in/ok.txt", "fine");
    let bad = p
        .path("in")
        .join(std::ffi::OsStr::from_bytes(b"contrato-\xf1.txt"));
    std::fs::write(&bad, "texto").unwrap();
    let done = p
        .hybrid(&["run", "scripts/echo.rhai", "in"])
        .output()
        .expect_code(2);
    let records = done.records();
    assert_eq!(records.len(), 2);
    let failed = records.iter().find(|r| r["ok"] == false).unwrap();
    assert_eq!(failed["error"]["kind"], "input");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid UTF-8"),
        "{failed}"
    );
}

#[test]
fn a_file_deleted_before_it_is_read_is_an_error_record() {
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    // A file named on the command line that is gone by the time it is read: the run records
    // it and goes on (inboxes meet this when a file is removed between event and read).
    let path = p.write("gone.txt", "x");
    let sources = hybrid::documents::sources(&[path.clone()]).unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut got = Vec::new();
    hybrid::documents::read_all(&sources, 1 << 20, |i| {
        got.push(i);
        true
    });
    let failed = got.pop().unwrap().unwrap_err();
    assert!(failed.reason.contains("gone"), "{}", failed.reason);
}

#[test]
fn an_import_cycle_is_an_error_not_a_crash() {
    let p = Project::new();
    p.write(
        "scripts/lib/a.rhai",
        "import \"lib/b\" as b;\nfn a() { 1 }\n",
    );
    p.write(
        "scripts/lib/b.rhai",
        "import \"lib/a\" as a;\nfn b() { 2 }\n",
    );
    p.write(
        "scripts/main.rhai",
        "import \"lib/a\" as a;\nfn process(doc) { a::a() }\n",
    );
    let err = p
        .hybrid(&["check", "scripts/main.rhai"])
        .output()
        .expect_code(1)
        .stderr();
    assert!(err.contains("import cycle: lib/a → lib/b → lib/a"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

/// A project whose `hybrid.toml` declares `scripts/echo.rhai`'s inputs and outputs.
fn declared_pipeline() -> Project {
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    p.write("in/a.txt", "uno");
    p.write("in/b.txt", "dos");
    p.write(
        "hybrid.toml",
        "[pipelines.\"scripts/echo.rhai\"]\ninputs = [\"in\"]\nout = \"results/echo.jsonl\"\njobs = 2\n",
    );
    p
}

#[test]
fn a_pipeline_with_declared_inputs_runs_with_the_script_alone() {
    let p = declared_pipeline();
    let done = p
        .hybrid(&["run", "scripts/echo.rhai"])
        .output()
        .expect_code(0);
    assert_eq!(done.stdout(), "", "records go to the declared out");
    let written = std::fs::read_to_string(p.path("results/echo.jsonl")).unwrap();
    assert_eq!(written.lines().count(), 2, "{written}");

    // Paths are relative to the settings file, not to where the command runs from.
    let mut run = p.hybrid(&["run", "../scripts/echo.rhai", "--overwrite"]);
    run.cmd.current_dir(p.path("in"));
    run.output().expect_code(0);
    let written = std::fs::read_to_string(p.path("results/echo.jsonl")).unwrap();
    assert_eq!(written.lines().count(), 2, "{written}");
}

#[test]
fn flags_override_what_a_pipeline_declares() {
    let p = declared_pipeline();
    p.write("other/c.txt", "tres");
    let done = p
        .hybrid(&["run", "scripts/echo.rhai", "other", "--out", "-"])
        .output()
        .expect_code(0);
    let records = done.records();
    assert_eq!(records.len(), 1, "INPUT replaces the declared inputs");
    assert_eq!(records[0]["id"], "other/c.txt");
    assert!(
        !p.path("results/echo.jsonl").exists(),
        "`--out -` is stdout"
    );
    p.hybrid(&["run", "scripts/echo.rhai", "--out", "mine.jsonl"])
        .output()
        .expect_code(0);
    assert_eq!(
        std::fs::read_to_string(p.path("mine.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
}

#[test]
fn with_nothing_declared_documents_come_from_piped_stdin() {
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    let done = p
        .hybrid(&["run", "scripts/echo.rhai"])
        .stdin("{\"id\": \"s1\", \"text\": \"uno\"}\n")
        .output()
        .expect_code(0);
    assert_eq!(done.record("s1")["ok"], true);
}

#[test]
fn with_no_inputs_anywhere_and_a_terminal_the_error_shows_both_ways() {
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    // A pseudo-terminal on stdin: an operator at a prompt, nothing piped.
    let (terminal, _leader) = crate::support::pseudo_terminal();
    let mut run = p.hybrid(&["run", "scripts/echo.rhai"]);
    run.cmd.stdin(terminal);
    let done = run.output();
    assert_eq!(done.code(), 1, "{}", done.stderr());
    let err = done.stderr();
    assert!(err.contains("no documents to read"), "{err}");
    assert!(err.contains("hint: pass INPUT"), "{err}");
    assert!(err.contains("[pipelines.\"scripts/echo.rhai\"]"), "{err}");
}

#[test]
fn check_shows_each_run_setting_and_where_it_came_from() {
    let p = declared_pipeline();
    let done = p
        .hybrid(&[
            "check",
            "scripts/echo.rhai",
            "--cloud-model",
            "gpt-5.4-mini",
        ])
        .env("HYBRID_LOCAL_MODEL", "tiny")
        .output()
        .expect_code(0);
    let out = done.stdout();
    let line = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{out}"))
            .to_owned()
    };
    let table = "hybrid.toml: [pipelines.\"scripts/echo.rhai\"]";
    assert!(line("inputs").contains(&format!("{table} inputs")), "{out}");
    assert!(line("out").contains("results/echo.jsonl"), "{out}");
    assert!(line("jobs").contains(&format!("{table} jobs")), "{out}");
    assert!(line("audit").contains("default: beside out"), "{out}");
    assert!(line("cloud.model").contains("flag --cloud-model"), "{out}");
    assert!(line("local").contains("env HYBRID_LOCAL_MODEL"), "{out}");
    assert!(line("cloud.base_url").contains("default"), "{out}");

    // A declared input that is not there, and an unknown key, are errors naming them.
    p.write(
        "hybrid.toml",
        "[pipelines.\"scripts/echo.rhai\"]\ninputs = [\"nowhere\"]\n",
    );
    let done = p.hybrid(&["check", "scripts/echo.rhai"]).output();
    assert_eq!(done.code(), 1);
    assert!(
        done.stderr().contains("`nowhere` does not exist"),
        "{}",
        done.stderr()
    );
    p.write(
        "hybrid.toml",
        "[pipelines.\"scripts/echo.rhai\"]\nimputs = [\"in\"]\n",
    );
    let done = p.hybrid(&["check", "scripts/echo.rhai"]).output();
    assert_eq!(done.code(), 1);
    assert!(done.stderr().contains("imputs"), "{}", done.stderr());
    p.write("hybrid.toml", "[pipelines.echo]\ninputs = [\"in\"]\n");
    let done = p.hybrid(&["check", "scripts/echo.rhai"]).output();
    assert_eq!(done.code(), 1);
    assert!(done.stderr().contains("bare name"), "{}", done.stderr());
}

#[test]
fn completions_and_man_pages_cover_the_public_commands_only() {
    let p = Project::new();
    let bash = p
        .hybrid(&["completions", "bash"])
        .output()
        .expect_code(0)
        .stdout();
    assert!(bash.contains("--local-model"), "{bash}");
    assert!(
        !bash.contains("__extract-pdf"),
        "the internal entry point stays hidden"
    );
    // What bash offers after `hybrid r<TAB>`, with the script loaded as a user would.
    std::fs::write(p.path("hybrid.bash"), &bash).unwrap();
    let offered = std::process::Command::new("bash")
        .arg("-c")
        .arg("source ./hybrid.bash; COMP_WORDS=(hybrid r); COMP_CWORD=1; _hybrid hybrid r hybrid; echo \"${COMPREPLY[@]}\"")
        .current_dir(p.path(""))
        .output()
        .unwrap();
    let offered = String::from_utf8_lossy(&offered.stdout);
    assert_eq!(offered.trim(), "run report rules review", "{offered}");
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        p.hybrid(&["completions", shell]).output().expect_code(0);
    }

    let page = p.hybrid(&["man"]).output().expect_code(0).stdout();
    assert!(page.contains(".TH hybrid 1"), "{page}");
    p.hybrid(&["man", "man1"]).output().expect_code(0);
    for name in [
        "hybrid.1",
        "hybrid-run.1",
        "hybrid-check.1",
        "hybrid-report.1",
        "hybrid-submit.1",
        "hybrid-rules-push.1",
        "hybrid-fleet-status.1",
    ] {
        let page = std::fs::read_to_string(p.path("man1").join(name)).unwrap();
        assert!(page.contains(".SH"), "{name}: {page}");
    }
    assert!(!p.path("man1/hybrid-__extract-pdf.1").exists());
}

#[test]
fn log_lines_never_share_a_row_with_the_progress_line() {
    use std::io::Read;
    let p = Project::new();
    p.write(
        "scripts/slow.rhai",
        "fn process(doc) {\n    let n = 0;\n    for i in 0..60000 { n += i; }\n    print(\"from-script \" + doc.id);\n    n\n}\n",
    );
    let docs: String = (0..40)
        .map(|i| format!("{{\"id\": \"d{i}\", \"text\": \"x\"}}\n"))
        .collect();
    p.write("docs.jsonl", docs);
    // stderr is a pseudo-terminal, so the progress line shows.
    let (terminal, mut screen) = crate::support::pseudo_terminal();
    let mut run = p.hybrid(&[
        "run",
        "scripts/slow.rhai",
        "docs.jsonl",
        "--out",
        "r.jsonl",
        "--jobs",
        "2",
    ]);
    run.cmd.env("HYBRID_LOG", "info").stderr(terminal);
    let mut child = run.cmd.spawn().unwrap();
    drop(run); // our copy of the terminal's end, so reading ends when the child exits
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the child has closed the terminal.
        while let Ok(n) = screen.read(&mut buf) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    });
    assert!(child.wait().unwrap().success());
    let shown = reader.join().unwrap();
    assert!(
        shown.contains("documents, 0 failed"),
        "the progress line showed:\n{shown:?}"
    );
    let mut logs = 0;
    for row in shown.split('\n') {
        // What stays visible on a row: the text after its last carriage return (the
        // terminal turns each newline into "\r\n").
        let row = row.strip_suffix('\r').unwrap_or(row);
        let visible = row.rsplit('\r').next().unwrap_or(row);
        if visible.contains("from-script") {
            logs += 1;
            assert!(
                !visible.contains("failed"),
                "a log line shares a row with the progress line: {row:?}"
            );
        }
    }
    assert_eq!(logs, 40, "{shown:?}");
}

#[test]
fn defs_document_every_host_function_and_standard_module() {
    let p = Project::new();
    p.hybrid(&["defs", "editor/defs"]).output().expect_code(0);
    let host = std::fs::read_to_string(p.path("editor/defs/__static__.d.rhai")).unwrap();
    assert!(host.starts_with("module static;"), "{host}");
    for f in ["local", "cloud", "validate", "both", "sampled", "emit"] {
        let at = host
            .find(&format!("fn {f}("))
            .unwrap_or_else(|| panic!("no `{f}` in:\n{host}"));
        // Each comes with its doc comment right above it.
        let before = host[..at].trim_end();
        assert!(before.ends_with("```"), "`{f}` has no doc comment:\n{host}");
    }
    assert!(
        std::fs::read_to_string(p.path("editor/defs/__builtin__.d.rhai"))
            .unwrap()
            .contains("fn ")
    );
    for (module, function) in [
        ("route", "reasons"),
        ("merge", "compare"),
        ("text", "excerpt"),
        ("finetune", "chat"),
    ] {
        let defs = std::fs::read_to_string(p.path(&format!("editor/defs/hybrid/{module}.d.rhai")))
            .unwrap();
        assert!(
            defs.contains(&format!("module \"hybrid/{module}\";")),
            "{defs}"
        );
        assert!(defs.contains(&format!("fn {function}(")), "{defs}");
        assert!(defs.contains("/// "), "{defs}");
    }
}

#[test]
fn functions_read_rules_as_plain_constants_or_through_global() {
    // `global::NAME` is what editors' Rhai tooling understands; the plain name is what the
    // host's constant resolver adds. Both read the same rule.
    let p = Project::new();
    p.write(
        "scripts/c.rhai",
        "const LIMIT = 3;\nfn process(doc) { #{ plain: LIMIT, global: global::LIMIT } }\n",
    );
    let done = p
        .hybrid(&["run", "scripts/c.rhai", "-"])
        .stdin("{\"id\": \"a\", \"text\": \"x\"}\n")
        .output()
        .expect_code(0);
    let r = done.record("a");
    assert_eq!(r["result"]["plain"], 3, "{r}");
    assert_eq!(r["result"]["global"], 3, "{r}");
}

#[test]
fn check_refuses_budget_caps_it_cannot_apply() {
    let p = Project::new();
    p.write("scripts/echo.rhai", ECHO);
    p.write("hybrid.toml", "[budget.scripts.echo]\nrun_usd = 1.0\n");
    let done = p.hybrid(&["check", "scripts/echo.rhai"]).output();
    assert_eq!(done.code(), 1);
    assert!(
        done.stderr()
            .contains("[budget.scripts.\"scripts/echo.rhai\"]"),
        "{}",
        done.stderr()
    );
    p.write("hybrid.toml", "[budget]\nmax_cloud_share = 1.5\n");
    let done = p.hybrid(&["check", "scripts/echo.rhai"]).output();
    assert_eq!(done.code(), 1);
    assert!(
        done.stderr().contains("max_cloud_share"),
        "{}",
        done.stderr()
    );
    p.write("hybrid.toml", "[cache]\ncloud = \"sometimes\"\n");
    let done = p.hybrid(&["check", "scripts/echo.rhai"]).output();
    assert_eq!(done.code(), 1);
    assert!(done.stderr().contains("[cache] cloud"), "{}", done.stderr());
}
