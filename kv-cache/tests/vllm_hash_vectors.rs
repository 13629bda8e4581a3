//! vLLM `sha256_cbor` block hashes against vectors computed independently
//! with Python's cbor2 + hashlib (tests/data/gen_vllm_block_hashes.py).

use llmd_kv_cache::vllm_hash::{ExtraKey, VllmBlockHasher, event_hash};
use serde_json::Value;

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn extra_key(v: &Value) -> ExtraKey {
    let (kind, value) = v.as_object().unwrap().iter().next().unwrap();
    match kind.as_str() {
        "int" => ExtraKey::Int(value.as_i64().unwrap()),
        "text" => ExtraKey::Text(value.as_str().unwrap().to_owned()),
        "bytes" => ExtraKey::Bytes(unhex(value.as_str().unwrap())),
        "tuple" => ExtraKey::Tuple(value.as_array().unwrap().iter().map(extra_key).collect()),
        other => panic!("unknown extra key kind {other}"),
    }
}

#[test]
fn block_hashes_match_python_cbor2_vectors() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vllm_block_hashes.json"
    ))
    .unwrap();
    let vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(vectors.len() >= 7, "expected the generated vectors");
    let mut with_extra_keys = 0;
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let hasher = VllmBlockHasher::new(
            v["seed"].as_str().unwrap(),
            v["block_size"].as_u64().unwrap() as usize,
        )
        .unwrap();
        let tokens: Vec<u32> = v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        let extra: Vec<Option<Vec<ExtraKey>>> = v["extra_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e.as_array()
                    .map(|items| items.iter().map(extra_key).collect())
            })
            .collect();
        with_extra_keys += usize::from(!extra.is_empty());
        assert_eq!(
            hex(hasher.none_hash()),
            v["none_hash"].as_str().unwrap(),
            "{name}: NONE_HASH"
        );
        let hashes = hasher.block_hashes_with_extra_keys(&tokens, &extra);
        let want: Vec<&str> = v["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        let got: Vec<String> = hashes.iter().map(|h| hex(h)).collect();
        assert_eq!(got, want, "{name}: block hashes");
        let want_events: Vec<u64> = v["event_hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_u64().unwrap())
            .collect();
        let got_events: Vec<u64> = hashes.iter().map(|h| event_hash(h)).collect();
        assert_eq!(got_events, want_events, "{name}: event hashes");
    }
    assert!(with_extra_keys > 0, "the vectors cover extra keys");
}
