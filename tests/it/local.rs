//! `local()` through the real mistral.rs engine, loading a tiny randomly initialised Gemma 4
//! that the host generates itself (`--local-model tiny`).

use crate::support::Project;

const TRIAGE: &str = r#"{"type": "object", "additionalProperties": false,
  "required": ["label", "confidence", "tags"],
  "properties": {
    "label": {"type": "string", "enum": ["invoice", "contract", "other"]},
    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    "tags": {"type": "array", "maxItems": 3, "items": {"type": "string", "enum": ["urgent", "legal", "finance"]}}
  }}"#;

fn project(script: &str) -> Project {
    let p = Project::new();
    p.write("schemas/triage.json", TRIAGE);
    p.write("scripts/s.rhai", script);
    p
}

#[test]
fn tiny_gemma4_answers_free_text_and_schema_constrained_json() {
    let p = project(
        "fn process(doc) {\n    let text = \"\";\n    try { text = local(#{ prompt: doc.text, max_tokens: 16 }); } catch (e) { if e.kind != \"truncated\" { throw e; } text = e.partial; }\n    let t = local(#{ prompt: doc.text, schema: \"triage\", max_tokens: 256 });\n    #{ text: text, triage: t, check: validate(t, \"triage\") }\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/s.rhai", "-", "--local-model", "tiny"])
        .stdin("{\"id\": \"a\", \"text\": \"Factura 118 por servicios de soporte.\"}\n")
        .output()
        .expect_code(0);
    let r = done.record("a");
    assert!(r["result"]["text"].is_string(), "{r}");
    assert_eq!(r["result"]["check"]["valid"], true, "{r}");
    assert!(["invoice", "contract", "other"]
        .contains(&r["result"]["triage"]["label"].as_str().unwrap()));
    for call in r["calls"].as_array().unwrap() {
        assert_eq!(call["function"], "local");
        assert_eq!(call["backend"], "mistralrs");
        assert!(call["ok"] == true || call["error"] == "truncated", "{call}");
        assert!(call["prompt_tokens"].as_u64().unwrap() > 0, "{call}");
        assert!(call["completion_tokens"].as_u64().unwrap() > 0, "{call}");
    }
    assert_eq!(r["calls"][1]["schema"], "triage");
    assert_eq!(r["calls"][1]["ok"], true);
    assert_eq!(r["calls"][1]["model"], "tiny");
    assert!(r["calls"][1]["tokens_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_generation_cut_off_by_max_tokens_is_a_truncated_error_with_the_partial_text() {
    let p = project(
        "fn process(doc) {\n    try {\n        return local(#{ prompt: doc.text, schema: \"triage\", max_tokens: 3 });\n    } catch (e) {\n        return #{ kind: e.kind, partial: e.partial };\n    }\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/s.rhai", "-", "--local-model", "tiny"])
        .stdin("{\"id\": \"a\", \"text\": \"hola\"}\n")
        .output()
        .expect_code(0);
    let r = done.record("a");
    assert_eq!(r["result"]["kind"], "truncated", "{r}");
    assert!(r["result"]["partial"].is_string(), "{r}");
    assert_eq!(r["calls"][0]["error"], "truncated");
}

#[test]
fn concurrent_documents_share_one_engine() {
    let p = project("fn process(doc) {\n    local(#{ prompt: doc.text, schema: \"triage\", max_tokens: 256 }).label\n}\n");
    let input: String = (0..8)
        .map(|i| format!("{{\"id\": \"d{i}\", \"text\": \"documento {i}\"}}\n"))
        .collect();
    let done = p
        .hybrid(&[
            "run",
            "scripts/s.rhai",
            "-",
            "--local-model",
            "tiny",
            "--jobs",
            "8",
        ])
        .stdin(input)
        .output()
        .expect_code(0);
    assert_eq!(done.records().len(), 8);
    let loads = done.stderr().matches("local model loaded").count();
    assert_eq!(loads, 1, "the model must load once:\n{}", done.stderr());
}

#[test]
fn a_script_that_never_calls_local_never_loads_it() {
    let p = project("fn process(doc) { doc.id }\n");
    let done = p
        .hybrid(&[
            "run",
            "scripts/s.rhai",
            "-",
            "--local-model",
            "/nonexistent/model",
        ])
        .stdin("{\"id\": \"a\"}\n")
        .output()
        .expect_code(0);
    assert!(!done.stderr().contains("local model"), "{}", done.stderr());
}

#[test]
fn bad_model_directories_get_clear_errors() {
    let p = project("fn process(doc) {\n    try { return local(doc.text); } catch (e) { return #{ kind: e.kind, message: e.message }; }\n}\n");
    p.write(
        "models/no-tokenizer/config.json",
        r#"{"architectures": ["Gemma4ForConditionalGeneration"]}"#,
    );
    p.write(
        "models/llama/config.json",
        r#"{"architectures": ["LlamaForCausalLM"]}"#,
    );
    p.write("models/llama/tokenizer.json", "{}");
    p.write(
        "models/llama/tokenizer_config.json",
        r#"{"chat_template": "x"}"#,
    );
    for (dir, needle) in [
        ("./models/missing", "does not exist"),
        ("models/no-tokenizer", "tokenizer.json"),
        ("models/llama", "LlamaForCausalLM"),
    ] {
        let done = p
            .hybrid(&["run", "scripts/s.rhai", "-", "--local-model", dir])
            .stdin("{\"id\": \"a\", \"text\": \"x\"}\n")
            .output()
            .expect_code(0);
        let r = done.record("a");
        assert_eq!(r["result"]["kind"], "load", "{r}");
        let message = r["result"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{dir}: {message}");
        assert!(message.contains("hint:"), "{dir}: {message}");
    }
}

#[test]
fn a_hub_id_that_cannot_be_fetched_offline_says_how_to_point_at_a_directory() {
    let p = project("fn process(doc) {\n    try { return local(doc.text); } catch (e) { return #{ kind: e.kind, message: e.message }; }\n}\n");
    let done = p
        .hybrid(&[
            "run",
            "scripts/s.rhai",
            "-",
            "--local-model",
            "google/gemma-4-E4B-it",
        ])
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", p.path("hf").to_str().unwrap())
        .stdin("{\"id\": \"a\", \"text\": \"x\"}\n")
        .output()
        .expect_code(0);
    let r = done.record("a");
    assert_eq!(r["result"]["kind"], "load", "{r}");
    let message = r["result"]["message"].as_str().unwrap();
    assert!(message.contains("google/gemma-4-E4B-it"), "{message}");
    assert!(message.contains("hint:"), "{message}");
}

#[test]
fn the_tiny_model_closes_strings_early_instead_of_filling_them() {
    // Random weights used to write every string to its `maxLength`, which made the
    // quickstart and this suite slow; the tiny model now leans toward closing tokens.
    let p = project(
        "fn process(doc) {\n    local(#{ prompt: doc.text, schema: #{ type: \"object\", properties: #{ summary: #{ type: \"string\", maxLength: 400 } }, required: [\"summary\"], additionalProperties: false }, max_tokens: 600 })\n}\n",
    );
    let done = p
        .hybrid(&["run", "scripts/s.rhai", "-", "--local-model", "tiny"])
        .stdin("{\"id\": \"a\", \"text\": \"uno\"}\n{\"id\": \"b\", \"text\": \"dos\"}\n")
        .output()
        .expect_code(0);
    for r in done.records() {
        let summary = r["result"]["summary"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"));
        assert!(summary.len() < 100, "{} bytes: {r}", summary.len());
        assert!(
            r["calls"][0]["completion_tokens"].as_u64().unwrap() < 120,
            "{r}"
        );
    }
}
