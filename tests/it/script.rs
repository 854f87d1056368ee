//! The script contract: constants, `validate()`, catchable errors, engine limits.

use crate::support::Project;

#[test]
fn top_level_constants_are_rules_functions_can_read() {
    let p = Project::new();
    p.write(
        "scripts/rules.rhai",
        "const ESCALATE_BELOW = 0.75;\nfn process(doc) {\n    let score = parse_float(doc.text);\n    #{ escalate: score < ESCALATE_BELOW }\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/rules.rhai", "-"])
        .stdin("{\"id\": \"low\", \"text\": \"0.5\"}\n{\"id\": \"high\", \"text\": \"0.9\"}\n")
        .output()
        .expect_code(0);
    assert_eq!(done.record("low")["result"]["escalate"], true);
    assert_eq!(done.record("high")["result"]["escalate"], false);
}

#[test]
fn validate_reports_each_violation_with_its_path() {
    let p = Project::new();
    p.write(
        "schemas/item.json",
        r#"{"type": "object", "properties": {"price": {"type": "number", "minimum": 0}}, "required": ["price"]}"#,
    );
    p.write(
        "scripts/v.rhai",
        "fn process(doc) {\n    let item = parse_json(doc.text);\n    validate(item, \"item\")\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/v.rhai", "-"])
        .stdin("{\"id\": \"good\", \"text\": \"{\\\"price\\\": 3}\"}\n{\"id\": \"bad\", \"text\": \"{\\\"price\\\": -1}\"}\n")
        .output()
        .expect_code(0);
    assert_eq!(done.record("good")["result"]["valid"], true);
    let bad = done.record("bad");
    assert_eq!(bad["result"]["valid"], false);
    assert_eq!(bad["result"]["errors"][0]["path"], "/price");
}

#[test]
fn inline_schemas_work_in_validate() {
    let p = Project::new();
    p.write(
        "scripts/v.rhai",
        "fn process(doc) {\n    validate(#{ n: 1 }, #{ type: \"object\", required: [\"m\"] }).valid\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/v.rhai", "-"])
        .stdin("{\"id\": 1}\n")
        .output()
        .expect_code(0);
    assert_eq!(done.record("1")["result"], false);
}

#[test]
fn an_endless_loop_fails_that_document_only() {
    let p = Project::new();
    p.write("hybrid.toml", "[limits]\nmax_operations = 100000\n");
    p.write(
        "scripts/loop.rhai",
        "fn process(doc) {\n    if doc.text == \"loop\" { loop { } }\n    \"done\"\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/loop.rhai", "-"])
        .stdin("{\"id\": \"a\", \"text\": \"loop\"}\n{\"id\": \"b\", \"text\": \"fine\"}\n")
        .output()
        .expect_code(2);
    let a = done.record("a");
    assert_eq!(a["error"]["kind"], "limit");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_operations"),
        "{a}"
    );
    assert_eq!(done.record("b")["result"], "done");
}

#[test]
fn endless_recursion_and_huge_strings_trip_their_limits() {
    let p = Project::new();
    p.write(
        "hybrid.toml",
        "[limits]\nmax_call_levels = 20\nmax_string_size = 1000\nmax_document_memory = 33554432\n",
    );
    p.write(
        "scripts/deep.rhai",
        "fn down(n) { down(n + 1) }\nfn process(doc) {\n    if doc.text == \"deep\" { return down(0); }\n    let s = \"x\";\n    if doc.text == \"long\" { while s.len() < 2000 { s += s; } return s; }\n    loop { s += s; }\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/deep.rhai", "-"])
        .stdin("{\"id\": \"deep\", \"text\": \"deep\"}\n{\"id\": \"big\", \"text\": \"big\"}\n{\"id\": \"long\", \"text\": \"long\"}\n")
        .output()
        .expect_code(2);
    let message = |id: &str| {
        let r = done.record(id);
        assert_eq!(r["error"]["kind"], "limit", "{r}");
        r["error"]["message"].as_str().unwrap().to_owned()
    };
    assert!(message("deep").contains("max_call_levels"));
    // A string doubling forever: stopped by the document's memory budget.
    assert!(message("big").contains("max_document_memory"));
    // A string handed back over its size limit.
    assert!(message("long").contains("max_string_size"));
}

#[test]
fn a_scripts_own_throw_is_a_script_error_with_position() {
    let p = Project::new();
    p.write(
        "scripts/t.rhai",
        "fn process(doc) {\n    throw \"no parties found\";\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/t.rhai", "-"])
        .stdin("{\"id\": \"x\"}\n")
        .output()
        .expect_code(2);
    let r = done.record("x");
    assert_eq!(r["error"]["kind"], "script");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no parties found"));
    assert_eq!(r["error"]["position"], "scripts/t.rhai:2:5");
}

#[test]
fn a_script_cannot_forge_a_host_error_but_can_rethrow_one() {
    let p = Project::new();
    p.write(
        "scripts/t.rhai",
        "fn process(doc) {\n    if doc.id == \"forged\" { throw #{ host: true, kind: \"timeout\", message: \"the cloud timed out\", seal: \"0000000000000000\" }; }\n    try { cloud(\"hi\"); } catch (e) { throw e; }\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/t.rhai", "-"])
        .stdin("{\"id\": \"forged\"}\n{\"id\": \"real\"}\n")
        .output()
        .expect_code(2);
    assert_eq!(done.record("forged")["error"]["kind"], "script");
    // No key and the official endpoint: a real host error, thrown again by the script.
    assert_eq!(done.record("real")["error"]["kind"], "not_configured");
}

#[test]
fn stdlib_modules_import_from_the_binary_and_can_be_overridden() {
    let p = Project::new();
    p.write(
        "scripts/s.rhai",
        "import \"hybrid/text\" as text;\nfn process(doc) { #{ words: text::word_count(doc.text), head: text::excerpt(doc.text, 12) } }\n",
    );
    let done = p
        .hybrid(&["run", "scripts/s.rhai", "-"])
        .stdin("{\"id\": \"x\", \"text\": \"uno dos tres cuatro cinco\"}\n")
        .output()
        .expect_code(0);
    assert_eq!(done.record("x")["result"]["words"], 5);
    assert_eq!(done.record("x")["result"]["head"], "uno dos…");

    p.write(
        "stdlib/text.rhai",
        "fn word_count(s) { 42 }\nfn excerpt(s, n) { s }\n",
    );
    let done = p
        .hybrid(&["run", "scripts/s.rhai", "-"])
        .stdin("{\"id\": \"x\", \"text\": \"uno\"}\n")
        .output()
        .expect_code(0);
    assert_eq!(done.record("x")["result"]["words"], 42);
}

#[test]
fn array_and_map_size_limits_trip_too() {
    let p = Project::new();
    p.write(
        "hybrid.toml",
        "[limits]\nmax_array_size = 100\nmax_map_size = 100\nmax_document_memory = 33554432\n",
    );
    p.write(
        "scripts/grow.rhai",
        "fn process(doc) {\n    if doc.text == \"array\" { let a = []; for i in 0..101 { a.push(i); } return a; }\n    if doc.text == \"forever\" { let a = []; loop { a.push(\"item\"); } }\n    let m = #{};\n    for i in 0..101 { let one = #{}; one[\"k\" + i] = i; m += one; }\n    cloud(#{ input: m })\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/grow.rhai", "-", "--cloud", "dry-run"])
        .stdin("{\"id\": \"array\", \"text\": \"array\"}\n{\"id\": \"map\", \"text\": \"map\"}\n{\"id\": \"forever\", \"text\": \"forever\"}\n")
        .output()
        .expect_code(2);
    for (id, key) in [
        ("array", "max_array_size"),
        ("map", "max_map_size"),
        ("forever", "max_document_memory"),
    ] {
        let r = done.record(id);
        assert_eq!(r["error"]["kind"], "limit", "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains(key), "{r}");
    }
}
