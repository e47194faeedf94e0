//! The prompt tokenizer: `tokenizer/tokenizer.json`, or the CLIP BPE files `vocab.json` +
//! `merges.txt` that diffusers' `tokenizer/` folder holds when no `tokenizer.json` was saved.
//!
//! Prompts are encoded as diffusers' pipelines do: `<|startoftext|>`, the tokens, `<|endoftext|>`,
//! truncated to the text encoder's sequence length and padded to it (`padding="max_length"`).
//! The pad token is the tokenizer's own (`tokenizer.json` padding, else `pad_token` of
//! `tokenizer_config.json` or `special_tokens_map.json`), else CLIP's default `<|endoftext|>`: SD
//! 1.x pads with `<|endoftext|>`, SD 2.x with `!`, and the text encoder's output at the padded
//! positions depends on which, so the files' choice must win.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokenizers::{PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::DiffusionError;

/// CLIP's pre-tokenisation split (transformers' `CLIPTokenizer`).
const CLIP_SPLIT: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";

/// Turns prompts into fixed-length token id rows for the text encoder.
#[derive(Debug)]
pub struct PromptTokenizer {
    inner: Tokenizer,
    max_length: usize,
    pad_id: u32,
    source: PathBuf,
}

impl PromptTokenizer {
    /// Loads `dir/tokenizer.json`, else `dir/vocab.json` + `dir/merges.txt` as a CLIP tokenizer;
    /// every prompt becomes exactly `max_length` ids.
    pub fn load(dir: &Path, max_length: usize) -> Result<Self, DiffusionError> {
        let json_path = dir.join("tokenizer.json");
        let (mut inner, source) = if json_path.is_file() {
            let tokenizer =
                Tokenizer::from_file(&json_path).map_err(|e| DiffusionError::Tokenizer {
                    path: json_path.clone(),
                    reason: e.to_string(),
                })?;
            (tokenizer, json_path)
        } else {
            let vocab = dir.join("vocab.json");
            let merges = dir.join("merges.txt");
            for path in [&vocab, &merges] {
                if !path.is_file() {
                    return Err(DiffusionError::MissingFile {
                        path: if path == &vocab {
                            json_path.clone()
                        } else {
                            path.clone()
                        },
                    });
                }
            }
            (clip_bpe(&vocab, &merges)?, vocab)
        };
        let bad = |reason: String| DiffusionError::Tokenizer {
            path: source.clone(),
            reason,
        };
        let pad_token = match inner.get_padding() {
            Some(p) => p.pad_token.clone(),
            None => config_pad_token(dir).unwrap_or_else(|| EOS.to_string()),
        };
        let pad_id = inner
            .token_to_id(&pad_token)
            .ok_or_else(|| bad(format!("pad token `{pad_token}` is not in the vocabulary")))?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| bad(e.to_string()))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            direction: PaddingDirection::Right,
            pad_id,
            pad_token,
            ..PaddingParams::default()
        }));
        Ok(Self {
            inner,
            max_length,
            pad_id,
            source,
        })
    }

    /// The ids of `prompt`: start token, tokens, end token, padding; exactly
    /// [`max_length`](Self::max_length) of them.
    pub fn encode(&self, prompt: &str) -> Result<Vec<i64>, DiffusionError> {
        let encoding = self
            .inner
            .encode(prompt, true)
            .map_err(|e| DiffusionError::Tokenizer {
                path: self.source.clone(),
                reason: format!("encoding {prompt:?}: {e}"),
            })?;
        let ids: Vec<i64> = encoding.get_ids().iter().map(|&i| i64::from(i)).collect();
        if ids.len() != self.max_length {
            return Err(DiffusionError::Tokenizer {
                path: self.source.clone(),
                reason: format!(
                    "{prompt:?} encoded to {} ids, expected {}",
                    ids.len(),
                    self.max_length
                ),
            });
        }
        Ok(ids)
    }

    /// The sequence length every prompt is padded or truncated to.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The padding token's id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The file the vocabulary came from (`tokenizer.json` or `vocab.json`).
    pub fn source(&self) -> &Path {
        &self.source
    }
}

/// `pad_token` from `tokenizer_config.json` or `special_tokens_map.json` (a string or an object
/// with `content`).
fn config_pad_token(dir: &Path) -> Option<String> {
    ["tokenizer_config.json", "special_tokens_map.json"]
        .iter()
        .find_map(|name| {
            let text = std::fs::read_to_string(dir.join(name)).ok()?;
            let value: Value = serde_json::from_str(&text).ok()?;
            match value.get("pad_token")? {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        })
}

/// A CLIP byte-level BPE tokenizer from the legacy files, built exactly as transformers'
/// `CLIPTokenizer` builds it (NFC, whitespace runs to one space, lowercase; CLIP's split then
/// byte-level; `</w>` word suffix; start/end tokens around the sequence).
fn clip_bpe(vocab_path: &Path, merges_path: &Path) -> Result<Tokenizer, DiffusionError> {
    let bad = |path: &Path, reason: String| DiffusionError::Tokenizer {
        path: path.to_path_buf(),
        reason,
    };
    let vocab_text =
        std::fs::read_to_string(vocab_path).map_err(|e| bad(vocab_path, e.to_string()))?;
    let vocab: serde_json::Map<String, Value> =
        serde_json::from_str(&vocab_text).map_err(|e| bad(vocab_path, e.to_string()))?;
    let id_of = |token: &str| {
        vocab
            .get(token)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(vocab_path, format!("`{token}` is not in the vocabulary")))
    };
    let (bos_id, eos_id) = (id_of(BOS)?, id_of(EOS)?);
    let merges_text =
        std::fs::read_to_string(merges_path).map_err(|e| bad(merges_path, e.to_string()))?;
    let merges: Vec<&str> = merges_text
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
        .collect();
    if let Some(line) = merges.iter().find(|l| l.split(' ').count() != 2) {
        return Err(bad(
            merges_path,
            format!("merge line {line:?} is not `a b`"),
        ));
    }
    let special = |id: u64, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(bos_id, BOS), special(eos_id, EOS)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CLIP_SPLIT}, "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": {"type": "RobertaProcessing", "sep": [EOS, eos_id], "cls": [BOS, bos_id],
                           "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": EOS, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    let bytes = serde_json::to_vec(&spec).map_err(|e| bad(vocab_path, e.to_string()))?;
    Tokenizer::from_bytes(bytes).map_err(|e| bad(vocab_path, e.to_string()))
}
