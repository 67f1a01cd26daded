//! Hub ids, the cache layout and verification, offline.

use super::*;

#[test]
fn ids_parse_into_repo_revision_and_file() {
    let id =
        HubId::parse("hf:bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_K_M.gguf")
            .unwrap()
            .unwrap();
    assert_eq!(id.repo, "bartowski/SmolLM2-135M-Instruct-GGUF");
    assert_eq!(id.revision, "main");
    assert_eq!(
        id.file.as_deref(),
        Some("SmolLM2-135M-Instruct-Q4_K_M.gguf")
    );
    let id = HubId::parse("hf:org/repo@v1.0/sub/dir/model.gguf")
        .unwrap()
        .unwrap();
    assert_eq!(
        (id.revision.as_str(), id.file.as_deref()),
        ("v1.0", Some("sub/dir/model.gguf"))
    );
    assert_eq!(id.display(), "hf:org/repo@v1.0/sub/dir/model.gguf");
    let id = HubId::parse("hf:org/repo@refs/pr/12/m.gguf")
        .unwrap()
        .unwrap();
    assert_eq!(
        (id.revision.as_str(), id.file.as_deref()),
        ("refs/pr/12", Some("m.gguf"))
    );
    let id = HubId::parse("hf:HuggingFaceTB/SmolLM2-135M-Instruct")
        .unwrap()
        .unwrap();
    assert_eq!(id.file, None);
    assert_eq!(id.folder(), "models--HuggingFaceTB--SmolLM2-135M-Instruct");
    assert!(HubId::parse("smollm2-135m-instruct-q4_1").is_none());
}

#[test]
fn hostile_ids_are_refused() {
    for bad in [
        "hf:",
        "hf:org",
        "hf:../repo/x.gguf",
        "hf:org/..",
        "hf:org/repo/../../../../etc/passwd",
        "hf:org/repo/a//b.gguf",
        "hf:org/repo@../../x/f.gguf",
        "hf:org/repo@refs/heads/main/f.gguf",
        "hf:org/re--po/f.gguf",
        "hf:org/repo/a\\..\\b.gguf",
        "hf:org/repo/f\n.gguf",
        "hf:or g/repo",
    ] {
        let r = HubId::parse(bad).unwrap();
        assert!(r.is_err(), "{bad:?} parsed: {r:?}");
        assert!(r.unwrap_err().contains("hf:ORG/REPO"), "{bad:?}");
    }
}

#[test]
fn shard_names_from_an_index_are_checked() {
    let ok = r#"{"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00001-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}"#;
    assert_eq!(
        shards_of(ok).unwrap(),
        [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors"
        ]
    );
    for bad in [
        r#"{"weight_map":{"a":"../../x.safetensors"}}"#,
        r#"{"weight_map":{"a":"x.bin"}}"#,
        r#"{"weight_map":{}}"#,
        r#"{"nothing":1}"#,
        "not json",
    ] {
        assert!(shards_of(bad).is_err(), "{bad}");
    }
}

#[test]
fn recorded_endpoints_lose_their_credentials() {
    let mut env = HubEnv {
        cache: PathBuf::from("/nonexistent"),
        endpoint: DEFAULT_ENDPOINT.into(),
        offline: false,
        token: None,
    };
    assert_eq!(env.recorded_endpoint(), None);
    env.endpoint = "https://user:secret@mirror.example/hub".into();
    assert_eq!(
        env.recorded_endpoint().as_deref(),
        Some("https://mirror.example/hub")
    );
}
