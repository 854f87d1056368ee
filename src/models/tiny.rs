//! A tiny, randomly initialised Gemma 4 in Hugging Face layout, written on demand so the in-process
//! back end, its tests and its benchmarks run end to end without downloading gigabytes. The answers
//! are noise; the wiring (mistral.rs loader, tokenizer, chat template, constrained decoding) is real.
//!
//! The directory holds what mistral.rs 0.8.1's Gemma 4 loader reads: `config.json`
//! (`Gemma4ForConditionalGeneration`, a text and a vision config), `model.safetensors` (every tensor
//! that `vision_models/gemma4/{mod,text,vision,multimodal_embedding}.rs` asks for, nothing optional
//! beyond `layer_scalar`), a byte-level BPE `tokenizer.json` whose size is exactly the config's
//! `vocab_size`, `tokenizer_config.json` with a Gemma 4 style chat template, and
//! `generation_config.json` naming `<eos>` and `<turn|>` as end tokens.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use safetensors::{Dtype, View};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Bump when the files written change for the same spec, so cached copies are rebuilt.
pub const GENERATOR_VERSION: u32 = 2;

/// Special tokens, in id order. Ids 0..=3 match Gemma's own (`<pad>`, `<eos>`, `<bos>`, `<unk>`).
/// The seven media tokens are the exact strings mistral.rs's Gemma 4 processor registers as
/// special tokens: were any missing, the tokenizer would grow past `vocab_size` at load time.
const SPECIAL_TOKENS: [&str; 13] = [
    "<pad>",     // 0
    "<eos>",     // 1: the name llguidance/toktrie recognises as end of sequence
    "<bos>",     // 2
    "<unk>",     // 3
    "<|turn>",   // 4: start of a turn
    "<turn|>",   // 5: end of a turn
    "<|image|>", // 6: image_token_id
    "<|image>",  // 7: boi_token_id
    "<image|>",  // 8: eoi_token_id
    "<|audio|>", // 9: audio_token_id
    "<|audio>",  // 10: boa_token_id
    "<audio|>",  // 11: eoa_token_id
    "<|video|>", // 12: video_token_id
];
const PAD_ID: usize = 0;
const EOS_ID: usize = 1;
const BOS_ID: usize = 2;
const TURN_END_ID: usize = 5;
const IMAGE_ID: usize = 6;
const BOI_ID: usize = 7;
const EOI_ID: usize = 8;
const AUDIO_ID: usize = 9;
const BOA_ID: usize = 10;
const EOA_ID: usize = 11;
const VIDEO_ID: usize = 12;

/// A few merges over byte-level symbols (`Ġ` is a space, `Ċ` a newline) so common text and JSON
/// pieces take one token. Each merged string must be new and both halves must already exist.
const MERGES: [(&str, &str); 24] = [
    ("Ġ", "t"),
    ("Ġ", "a"),
    ("h", "e"),
    ("i", "n"),
    ("r", "e"),
    ("o", "n"),
    ("Ġt", "he"),
    ("e", "r"),
    ("a", "t"),
    ("e", "n"),
    ("o", "r"),
    ("e", "s"),
    ("a", "n"),
    ("i", "s"),
    ("Ġ", "s"),
    ("Ġ", "c"),
    ("Ġ", "w"),
    ("Ġ", "o"),
    ("Ġ", "\""),
    ("\"", ":"),
    ("\"", ","),
    ("Ġ", "Ġ"),
    ("Ċ", "Ċ"),
    ("Ġ", "{"),
];

/// A minimal Gemma 4 chat template: `<|turn>role\n...<turn|>\n` per message, assistant turns
/// under the `model` role, and an open `<|turn>model\n` for the generation prompt. It ignores
/// `enable_thinking` and never mentions `<|channel>`, so mistral.rs enables no reasoning parser.
const CHAT_TEMPLATE: &str = r#"{{- bos_token -}}
{%- for message in messages -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{- '<|turn>' ~ role ~ '\n' ~ (message['content'] | string | trim) ~ '<turn|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|turn>model\n' -}}{%- endif -%}"#;

/// Number of entries in a Gemma 4 vision position table (per axis). Only images use it.
const VISION_POSITIONS: usize = 128;

/// How the weights are stored. The loader converts to the run's dtype either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WeightDtype {
    F32,
    Bf16,
}

impl WeightDtype {
    fn size(self) -> usize {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::Bf16 => 2,
        }
    }

    fn safetensors(self) -> Dtype {
        match self {
            WeightDtype::F32 => Dtype::F32,
            WeightDtype::Bf16 => Dtype::BF16,
        }
    }

    fn torch_name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "float32",
            WeightDtype::Bf16 => "bfloat16",
        }
    }
}

/// The shape of a generated model. Everything is derived from these numbers and the seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TinySpec {
    /// Text hidden size.
    pub hidden: usize,
    /// Text decoder layers.
    pub layers: usize,
    /// Attention heads (both attention kinds).
    pub heads: usize,
    /// Key/value heads (both attention kinds).
    pub kv_heads: usize,
    /// Head size of the sliding-window layers.
    pub head_dim: usize,
    /// Head size of the full-attention layers.
    pub global_head_dim: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Every `full_attention_every`-th layer, and the last, uses full attention; the rest slide.
    pub full_attention_every: usize,
    pub sliding_window: usize,
    pub max_position_embeddings: usize,
    /// The vision tower is required by the loader even for text-only use; keep it small.
    pub vision_hidden: usize,
    pub vision_layers: usize,
    pub vision_heads: usize,
    pub vision_head_dim: usize,
    pub vision_intermediate: usize,
    pub vision_patch_size: usize,
    /// Standard deviation of the random projection and embedding weights (norms are 1).
    pub init_std: f32,
    /// Lean the random model toward tokens that close what it writes (`"`, `}`, `]`, end of
    /// turn), so schema-constrained answers stop at the first place the schema lets them
    /// instead of filling every string to `maxLength`. See [`Init::Embedding`].
    pub end_early: bool,
    pub dtype: WeightDtype,
    pub seed: u64,
}

impl TinySpec {
    /// The wiring-check model: under a megabyte on disk, loads in tens of milliseconds.
    pub fn tiny() -> TinySpec {
        TinySpec {
            hidden: 64,
            layers: 4,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            global_head_dim: 32,
            intermediate: 128,
            full_attention_every: 4,
            sliding_window: 128,
            max_position_embeddings: 8192,
            vision_hidden: 32,
            vision_layers: 1,
            vision_heads: 2,
            vision_head_dim: 16,
            vision_intermediate: 64,
            vision_patch_size: 16,
            init_std: 0.02,
            end_early: true,
            dtype: WeightDtype::F32,
            seed: 0x6765_6d6d_6134,
        }
    }

    /// A benchmark-sized model: about 260 million parameters (about 520 MB of bf16), so decode
    /// speed and memory behave like a small real model. Written tensor by tensor.
    pub fn mid() -> TinySpec {
        TinySpec {
            hidden: 1024,
            layers: 16,
            heads: 8,
            kv_heads: 4,
            head_dim: 128,
            global_head_dim: 256,
            intermediate: 4096,
            full_attention_every: 6,
            sliding_window: 512,
            max_position_embeddings: 8192,
            dtype: WeightDtype::Bf16,
            // Decode-speed benchmarks want long, unbiased answers.
            end_early: false,
            ..TinySpec::tiny()
        }
    }

    /// Size of the vocabulary (and of the embedding table): specials, 256 byte symbols, merges.
    pub fn vocab_size(&self) -> usize {
        vocab_size()
    }

    fn is_full_attention(&self, layer: usize) -> bool {
        layer + 1 == self.layers || (layer + 1) % self.full_attention_every == 0
    }

    fn layer_types(&self) -> Vec<&'static str> {
        (0..self.layers)
            .map(|i| {
                if self.is_full_attention(i) {
                    "full_attention"
                } else {
                    "sliding_attention"
                }
            })
            .collect()
    }

    fn check(&self) -> io::Result<()> {
        let bad = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tiny model spec: {what}"),
            ))
        };
        let nonzero = [
            ("hidden", self.hidden),
            ("layers", self.layers),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("global_head_dim", self.global_head_dim),
            ("intermediate", self.intermediate),
            ("full_attention_every", self.full_attention_every),
            ("sliding_window", self.sliding_window),
            ("max_position_embeddings", self.max_position_embeddings),
            ("vision_hidden", self.vision_hidden),
            ("vision_layers", self.vision_layers),
            ("vision_heads", self.vision_heads),
            ("vision_head_dim", self.vision_head_dim),
            ("vision_intermediate", self.vision_intermediate),
            ("vision_patch_size", self.vision_patch_size),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return bad(&format!("`{name}` must be at least 1"));
        }
        if self.heads % self.kv_heads != 0 {
            return bad("`heads` must be a multiple of `kv_heads`");
        }
        if self.head_dim % 2 != 0 || self.global_head_dim % 2 != 0 {
            return bad("head sizes must be even (rotary embeddings)");
        }
        if self.vision_head_dim % 4 != 0 {
            return bad("`vision_head_dim` must be a multiple of 4 (2-D rotary embeddings)");
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return bad("`init_std` must be a positive number");
        }
        Ok(())
    }

    /// A short stable hash of the spec and the generator version: the cache directory's name.
    pub fn cache_key(&self) -> String {
        let spec = serde_json::to_string(self).expect("a TinySpec always serialises");
        let digest = Sha256::digest(format!("tiny-gemma4 v{GENERATOR_VERSION} {spec}").as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec::tiny()
    }
}

/// Number of tokens in the generated tokenizer (and rows in the embedding table).
pub fn vocab_size() -> usize {
    SPECIAL_TOKENS.len() + 256 + MERGES.len()
}

/// Write `cache_dir/tiny-gemma4-<hash>/` for [`TinySpec::tiny`] unless it is already there, and
/// return it.
pub fn ensure_tiny_model(cache_dir: &Path) -> io::Result<PathBuf> {
    ensure_model(cache_dir, &TinySpec::tiny())
}

/// Write `cache_dir/tiny-gemma4-<hash>/` for `spec` unless it is already there, and return it.
/// The files go to a temporary sibling directory first, which is then renamed into place, so a
/// reader never sees a half-written model and concurrent writers do not clash.
pub fn ensure_model(cache_dir: &Path, spec: &TinySpec) -> io::Result<PathBuf> {
    let key = spec.cache_key();
    let dir = cache_dir.join(format!("tiny-gemma4-{key}"));
    if is_complete(&dir) {
        return Ok(dir);
    }
    fs::create_dir_all(cache_dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = cache_dir.join(format!(
        ".tiny-gemma4-{key}.tmp-{}-{nanos}",
        std::process::id()
    ));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    if let Err(e) = write_tiny_gemma4(&tmp, spec) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() && !is_complete(&dir) {
        // Left over from something other than this function (renames are atomic): replace it.
        let _ = fs::remove_dir_all(&dir);
    }
    match fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            // Another process may have won the race; its copy is as good as ours.
            if is_complete(&dir) {
                Ok(dir)
            } else {
                Err(e)
            }
        }
    }
}

fn is_complete(dir: &Path) -> bool {
    [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "model.safetensors",
    ]
    .iter()
    .all(|f| dir.join(f).is_file())
}

/// Write a randomly initialised Gemma 4 described by `spec` into `dir` (created if needed).
/// Deterministic: the same spec and seed give byte-identical files.
pub fn write_tiny_gemma4(dir: &Path, spec: &TinySpec) -> io::Result<()> {
    spec.check()?;
    fs::create_dir_all(dir)?;
    write_json(&dir.join("config.json"), &config_json(spec))?;
    write_json(&dir.join("tokenizer.json"), &tokenizer_json())?;
    write_json(
        &dir.join("tokenizer_config.json"),
        &tokenizer_config_json(spec),
    )?;
    write_json(
        &dir.join("generation_config.json"),
        &json!({
            "bos_token_id": BOS_ID,
            "eos_token_id": [EOS_ID, TURN_END_ID],
            "pad_token_id": PAD_ID,
        }),
    )?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(
        tensors(spec),
        Some(metadata),
        &dir.join("model.safetensors"),
    )
    .map_err(|e| io::Error::other(format!("cannot write model.safetensors: {e}")))
}

fn write_json(path: &Path, value: &Value) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    fs::write(path, text)
}

fn config_json(spec: &TinySpec) -> Value {
    let layer_types = spec.layer_types();
    json!({
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "torch_dtype": spec.dtype.torch_name(),
        "tie_word_embeddings": true,
        "image_token_id": IMAGE_ID,
        "audio_token_id": AUDIO_ID,
        "video_token_id": VIDEO_ID,
        "boi_token_id": BOI_ID,
        "eoi_token_id": EOI_ID,
        "boa_token_id": BOA_ID,
        "eoa_token_id": EOA_ID,
        "vision_soft_tokens_per_image": 280,
        "text_config": {
            "model_type": "gemma4_text",
            "vocab_size": vocab_size(),
            "hidden_size": spec.hidden,
            "intermediate_size": spec.intermediate,
            "num_hidden_layers": spec.layers,
            "num_attention_heads": spec.heads,
            "num_key_value_heads": spec.kv_heads,
            "head_dim": spec.head_dim,
            "global_head_dim": spec.global_head_dim,
            "hidden_activation": "gelu_pytorch_tanh",
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": spec.max_position_embeddings,
            "sliding_window": spec.sliding_window,
            "sliding_window_pattern": spec.full_attention_every,
            "layer_types": layer_types,
            "rope_theta": 1_000_000.0,
            "rope_parameters": {
                "full_attention": {
                    "rope_type": "proportional",
                    "rope_theta": 1_000_000.0,
                    "partial_rotary_factor": 0.25
                },
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}
            },
            "final_logit_softcapping": 30.0,
            "query_pre_attn_scalar": spec.head_dim,
            "attention_bias": false,
            "attention_k_eq_v": false,
            "num_kv_shared_layers": 0,
            "enable_moe_block": false,
            "use_double_wide_mlp": false,
            "tie_word_embeddings": true,
            "pad_token_id": PAD_ID,
            "eos_token_id": EOS_ID,
            "bos_token_id": BOS_ID
        },
        "vision_config": {
            "model_type": "gemma4_vision",
            "hidden_size": spec.vision_hidden,
            "intermediate_size": spec.vision_intermediate,
            "num_hidden_layers": spec.vision_layers,
            "num_attention_heads": spec.vision_heads,
            "num_key_value_heads": spec.vision_heads,
            "head_dim": spec.vision_head_dim,
            "hidden_activation": "gelu_pytorch_tanh",
            "rms_norm_eps": 1e-6,
            "patch_size": spec.vision_patch_size,
            "position_embedding_size": VISION_POSITIONS,
            "pooling_kernel_size": 3,
            "default_output_length": 280,
            "use_clipped_linears": false,
            "standardize": false,
            "rope_parameters": {"rope_type": "default", "rope_theta": 100.0}
        }
    })
}

fn tokenizer_config_json(spec: &TinySpec) -> Value {
    json!({
        "add_bos_token": false,
        "add_eos_token": false,
        "bos_token": SPECIAL_TOKENS[BOS_ID],
        "eos_token": SPECIAL_TOKENS[EOS_ID],
        "pad_token": SPECIAL_TOKENS[PAD_ID],
        "unk_token": "<unk>",
        "model_max_length": spec.max_position_embeddings,
        "clean_up_tokenization_spaces": false,
        "tokenizer_class": "GemmaTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    })
}

/// GPT-2's byte-to-symbol table, the alphabet of the ByteLevel pre-tokenizer and decoder.
fn byte_symbols() -> Vec<char> {
    let mut printable = vec![false; 256];
    for b in (b'!'..=b'~').chain(0xA1..=0xAC).chain(0xAE..=0xFF) {
        printable[b as usize] = true;
    }
    let mut next = 256u32;
    (0..256usize)
        .map(|b| {
            if printable[b] {
                char::from_u32(b as u32).expect("a Latin-1 code point")
            } else {
                let c = char::from_u32(next).expect("a BMP code point");
                next += 1;
                c
            }
        })
        .collect()
}

fn tokenizer_json() -> Value {
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
        vocab.insert((*token).to_string(), json!(id));
        added.push(json!({
            "id": id,
            "content": token,
            "single_word": false,
            "lstrip": false,
            "rstrip": false,
            "normalized": false,
            "special": true,
        }));
    }
    for symbol in byte_symbols() {
        let id = vocab.len();
        vocab.insert(symbol.to_string(), json!(id));
    }
    let mut merges = Vec::new();
    for (left, right) in MERGES {
        debug_assert!(
            vocab.contains_key(left) && vocab.contains_key(right),
            "merge halves must exist"
        );
        let merged = format!("{left}{right}");
        debug_assert!(!vocab.contains_key(&merged), "merge results must be new");
        let id = vocab.len();
        vocab.insert(merged, json!(id));
        merges.push(json!([left, right]));
    }
    debug_assert_eq!(vocab.len(), vocab_size());
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {
            "type": "ByteLevel",
            "add_prefix_space": false,
            "trim_offsets": true,
            "use_regex": true
        },
        "post_processor": null,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": true,
            "trim_offsets": true,
            "use_regex": true
        },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges
        }
    })
}

/// How a tensor's values are made.
#[derive(Debug, Clone, Copy)]
enum Init {
    /// Approximately normal with this standard deviation.
    Normal(f32),
    /// Every element equal (norm weights, layer scalars).
    Const(f32),
    /// The first element `.0`, every other `.1` (the final norm of an `end_early` model).
    FirstThen(f32, f32),
    /// The (tied) token embedding of an `end_early` model: normal, except that column 0 holds
    /// `carrier` for every token and `carrier + lift` for the [`CLOSING`] tokens.
    ///
    /// Every input token then writes a large constant along dimension 0 of the residual
    /// stream, which the random layers (a few units each) cannot outweigh; after the final
    /// norm the hidden state points along it whatever the context. The output projection is
    /// the same table, so each token's logit is about `sqrt(hidden) * EARLY_NORM * row[0]`:
    /// equal for ordinary tokens (sampling among what the grammar allows stays uniform) and
    /// higher by a few units for closing tokens, kept clear of the final logit soft-cap by
    /// the small first weight of the final norm.
    Embedding { std: f32, carrier: f32, lift: f32 },
}

/// Column 0 of every embedding row of an `end_early` model.
const EARLY_CARRIER: f32 = 20.0;
/// What closing tokens add to it.
const EARLY_LIFT: f32 = 20.0;
/// The final norm's weight on dimension 0: with a 64-wide model, ordinary tokens' logits come
/// out near 4.8 and closing tokens' near 9.6, about 100 times likelier each.
const EARLY_NORM: f32 = 0.03;

/// The tokens an `end_early` model favours: those that close a string, object or array, and
/// the two that end the answer.
fn closing_tokens() -> Vec<usize> {
    // Byte symbols follow the specials in byte order (see `tokenizer_json`).
    let mut ids = vec![EOS_ID, TURN_END_ID];
    ids.extend([b'"', b'}', b']'].map(|b| SPECIAL_TOKENS.len() + b as usize));
    ids
}

/// A tensor whose bytes are generated only when the serializer asks for them, one tensor at a
/// time, so even the benchmark model is written without holding it all in memory.
struct LazyTensor {
    shape: Vec<usize>,
    init: Init,
    dtype: WeightDtype,
    seed: u64,
}

impl LazyTensor {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    fn generate(&self) -> Vec<u8> {
        let n = self.numel();
        let mut out = Vec::with_capacity(n * self.dtype.size());
        match self.init {
            Init::Const(v) => {
                for _ in 0..n {
                    push_value(&mut out, v, self.dtype);
                }
            }
            Init::FirstThen(first, rest) => {
                for i in 0..n {
                    push_value(&mut out, if i == 0 { first } else { rest }, self.dtype);
                }
            }
            Init::Embedding { std, carrier, lift } => {
                let width = *self.shape.last().expect("an embedding is two-dimensional");
                let closing = closing_tokens();
                let normal = LazyTensor {
                    init: Init::Normal(std),
                    dtype: WeightDtype::F32,
                    shape: self.shape.clone(),
                    seed: self.seed,
                }
                .generate();
                for (i, v) in normal.chunks_exact(4).enumerate() {
                    let (row, col) = (i / width, i % width);
                    let v = match col {
                        0 if closing.contains(&row) => carrier + lift,
                        0 => carrier,
                        _ => f32::from_le_bytes(v.try_into().expect("four bytes")),
                    };
                    push_value(&mut out, v, self.dtype);
                }
            }
            Init::Normal(std) => {
                // Irwin-Hall: the sum of four uniform bytes is close to normal, with mean 510
                // and standard deviation sqrt(4 * (256^2 - 1) / 12) ≈ 147.8. One u32 per value
                // keeps this cheap even when this crate is built without optimisation.
                const MEAN: f32 = 510.0;
                const SD: f32 = 147.80;
                let scale = std / SD;
                let mut rng = StdRng::seed_from_u64(self.seed);
                let mut buf = vec![0u8; 4 * 65_536];
                let mut left = n;
                while left > 0 {
                    let take = left.min(65_536);
                    let bytes = &mut buf[..4 * take];
                    rng.fill_bytes(bytes);
                    for c in bytes.chunks_exact(4) {
                        let sum = c[0] as u32 + c[1] as u32 + c[2] as u32 + c[3] as u32;
                        push_value(&mut out, (sum as f32 - MEAN) * scale, self.dtype);
                    }
                    left -= take;
                }
            }
        }
        out
    }
}

fn push_value(out: &mut Vec<u8>, v: f32, dtype: WeightDtype) {
    match dtype {
        WeightDtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
        WeightDtype::Bf16 => out.extend_from_slice(&f32_to_bf16(v).to_le_bytes()),
    }
}

/// Round to nearest even; the values here are always finite.
fn f32_to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

impl View for LazyTensor {
    fn dtype(&self) -> Dtype {
        self.dtype.safetensors()
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.generate())
    }
    fn data_len(&self) -> usize {
        self.numel() * self.dtype.size()
    }
}

/// FNV-1a, to give every tensor its own stream whatever order they are written in.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every tensor the mistral.rs 0.8.1 Gemma 4 loader reads for this spec, by name.
fn tensors(spec: &TinySpec) -> Vec<(String, LazyTensor)> {
    let mut list: Vec<(String, Vec<usize>, Init)> = Vec::new();
    let normal = Init::Normal(spec.init_std);
    let one = Init::Const(1.0);
    let mut add = |name: String, shape: Vec<usize>, init: Init| list.push((name, shape, init));

    // Text model (vision_models/gemma4/text.rs, TextModel::new / DecoderLayer::new / Attention::new).
    let t = "model.language_model";
    let h = spec.hidden;
    let (embedding, final_norm) = if spec.end_early {
        (
            Init::Embedding {
                std: spec.init_std,
                carrier: EARLY_CARRIER,
                lift: EARLY_LIFT,
            },
            Init::FirstThen(EARLY_NORM, 1.0),
        )
    } else {
        (normal, one)
    };
    add(
        format!("{t}.embed_tokens.weight"),
        vec![vocab_size(), h],
        embedding,
    );
    add(format!("{t}.norm.weight"), vec![h], final_norm);
    for i in 0..spec.layers {
        let l = format!("{t}.layers.{i}");
        let hd = if spec.is_full_attention(i) {
            spec.global_head_dim
        } else {
            spec.head_dim
        };
        let (q, kv) = (spec.heads * hd, spec.kv_heads * hd);
        add(format!("{l}.self_attn.q_proj.weight"), vec![q, h], normal);
        add(format!("{l}.self_attn.k_proj.weight"), vec![kv, h], normal);
        add(format!("{l}.self_attn.v_proj.weight"), vec![kv, h], normal);
        add(format!("{l}.self_attn.o_proj.weight"), vec![h, q], normal);
        add(format!("{l}.self_attn.q_norm.weight"), vec![hd], one);
        add(format!("{l}.self_attn.k_norm.weight"), vec![hd], one);
        add(
            format!("{l}.mlp.gate_proj.weight"),
            vec![spec.intermediate, h],
            normal,
        );
        add(
            format!("{l}.mlp.up_proj.weight"),
            vec![spec.intermediate, h],
            normal,
        );
        add(
            format!("{l}.mlp.down_proj.weight"),
            vec![h, spec.intermediate],
            normal,
        );
        for norm in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ] {
            add(format!("{l}.{norm}.weight"), vec![h], one);
        }
        add(format!("{l}.layer_scalar"), vec![1], one);
    }

    // Vision tower (vision_models/gemma4/vision.rs, VisionTower::new and below).
    let v = "model.vision_tower";
    let vh = spec.vision_hidden;
    let (vq, vi) = (
        spec.vision_heads * spec.vision_head_dim,
        spec.vision_intermediate,
    );
    let patch = 3 * spec.vision_patch_size * spec.vision_patch_size;
    add(
        format!("{v}.patch_embedder.input_proj.weight"),
        vec![vh, patch],
        normal,
    );
    add(
        format!("{v}.patch_embedder.position_embedding_table"),
        vec![2, VISION_POSITIONS, vh],
        normal,
    );
    for j in 0..spec.vision_layers {
        let l = format!("{v}.encoder.layers.{j}");
        add(format!("{l}.self_attn.q_proj.weight"), vec![vq, vh], normal);
        add(format!("{l}.self_attn.k_proj.weight"), vec![vq, vh], normal);
        add(format!("{l}.self_attn.v_proj.weight"), vec![vq, vh], normal);
        add(format!("{l}.self_attn.o_proj.weight"), vec![vh, vq], normal);
        add(
            format!("{l}.self_attn.q_norm.weight"),
            vec![spec.vision_head_dim],
            one,
        );
        add(
            format!("{l}.self_attn.k_norm.weight"),
            vec![spec.vision_head_dim],
            one,
        );
        add(format!("{l}.mlp.gate_proj.weight"), vec![vi, vh], normal);
        add(format!("{l}.mlp.up_proj.weight"), vec![vi, vh], normal);
        add(format!("{l}.mlp.down_proj.weight"), vec![vh, vi], normal);
        for norm in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ] {
            add(format!("{l}.{norm}.weight"), vec![vh], one);
        }
    }

    // Vision-to-text projection (multimodal_embedding.rs; its pre-projection norm has no weight).
    add(
        "model.embed_vision.embedding_projection.weight".to_string(),
        vec![h, vh],
        normal,
    );

    list.into_iter()
        .map(|(name, shape, init)| {
            let seed = spec.seed ^ fnv1a(&name);
            (
                name,
                LazyTensor {
                    shape,
                    init,
                    dtype: spec.dtype,
                    seed,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_tokens_are_the_quote_braces_and_the_end_tokens() {
        let tok = tokenizer_json();
        let vocab = tok["model"]["vocab"].as_object().unwrap();
        let symbols = byte_symbols();
        let id = |b: u8| vocab[&symbols[b as usize].to_string()].as_u64().unwrap() as usize;
        let mut want = vec![EOS_ID, TURN_END_ID, id(b'"'), id(b'}'), id(b']')];
        let mut got = closing_tokens();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn vocabulary_matches_config_and_covers_every_byte() {
        let tok = tokenizer_json();
        let vocab = tok["model"]["vocab"].as_object().unwrap();
        assert_eq!(vocab.len(), vocab_size());
        let mut ids: Vec<u64> = vocab.values().map(|v| v.as_u64().unwrap()).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            (0..vocab_size() as u64).collect::<Vec<_>>(),
            "ids are dense"
        );
        assert_eq!(byte_symbols().len(), 256);
        for s in byte_symbols() {
            assert!(vocab.contains_key(&s.to_string()));
        }
        let cfg = config_json(&TinySpec::tiny());
        assert_eq!(
            cfg["text_config"]["vocab_size"].as_u64().unwrap() as usize,
            vocab.len()
        );
        assert_eq!(vocab["<eos>"], json!(EOS_ID));
        assert_eq!(vocab["<turn|>"], json!(TURN_END_ID));
        assert_eq!(vocab["<|image|>"], json!(IMAGE_ID));
    }

    #[test]
    fn layer_types_end_in_full_attention() {
        assert_eq!(
            TinySpec::tiny().layer_types(),
            [
                "sliding_attention",
                "sliding_attention",
                "sliding_attention",
                "full_attention"
            ]
        );
        let mid = TinySpec::mid().layer_types();
        assert_eq!(mid.len(), 16);
        assert_eq!(mid.iter().filter(|t| **t == "full_attention").count(), 3);
    }

    #[test]
    fn weights_are_deterministic_and_small() {
        let a = tensors(&TinySpec::tiny());
        let b = tensors(&TinySpec::tiny());
        assert_eq!(a.len(), b.len());
        let bytes: usize = a.iter().map(|(_, t)| t.data_len()).sum();
        assert!(bytes < 1_500_000, "tiny model is {bytes} bytes");
        let (name, t) = &a[0];
        assert_eq!(name, "model.language_model.embed_tokens.weight");
        assert_eq!(t.generate(), b[0].1.generate());
        assert_eq!(t.generate().len(), t.data_len());
    }

    #[test]
    fn mid_has_a_few_hundred_million_parameters() {
        let n: usize = tensors(&TinySpec::mid())
            .iter()
            .map(|(_, t)| t.numel())
            .sum();
        assert!((200_000_000..400_000_000).contains(&n), "{n} parameters");
    }

    #[test]
    fn bf16_rounds_to_nearest() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(-2.0), 0xc000);
        assert_eq!(f32_to_bf16(0.02), 0x3ca4); // 0x3ca3_d70a rounds up
    }

    #[test]
    fn ensure_writes_once_and_reuses() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ensure_tiny_model(tmp.path()).unwrap();
        assert!(dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("tiny-gemma4-"));
        assert!(is_complete(&dir));
        let st = fs::read(dir.join("model.safetensors")).unwrap();
        let parsed = safetensors::SafeTensors::deserialize(&st).unwrap();
        let embed = parsed
            .tensor("model.language_model.embed_tokens.weight")
            .unwrap();
        assert_eq!(embed.shape(), [vocab_size(), 64]);
        let again = ensure_tiny_model(tmp.path()).unwrap();
        assert_eq!(dir, again);
        let leftovers = fs::read_dir(tmp.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary directories are left behind");
        let cfg: Value =
            serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["architectures"][0], "Gemma4ForConditionalGeneration");
    }
}
