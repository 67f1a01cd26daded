//! llama.cpp, the peer the engine is checked against, builds from the source llama-cpp-python
//! 0.3.36 vendors and its tools start. The module's name puts it first in the order the test
//! harness starts tests (by name), so the build (about ten minutes on 2 cores, once; cached
//! after) runs beside every other test instead of starting when the first peer test is reached.
//! Like every live peer test it is ignored by default (`cargo test --release -- --ignored
//! peer_`); the default run checks against llama.cpp's recorded answers.

use crate::common::llama_cpp;

#[test]
#[ignore = "builds llama.cpp (~10 min on 2 cores, once): cargo test --release -- --ignored peer_"]
fn peer_llama_cpp_tools_build_once_and_start() {
    for (tool, arg, says) in [
        ("llama-server", "--version", "version"),
        ("llama-quantize", "--help", "usage"),
    ] {
        let bin = llama_cpp::bin(tool);
        let out = std::process::Command::new(&bin)
            .arg(arg)
            .output()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", bin.display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains(says),
            "{} {arg} said:\n{}",
            bin.display(),
            llama_cpp::tail(&text, 10)
        );
    }
}
