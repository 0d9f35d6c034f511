//! The fuzz harnesses, shared by the libFuzzer targets (`fuzz_targets/`) and by the stable
//! corpus replay test (`tests/fuzz_corpus.rs`, which includes these files by path).

pub mod decode;
pub mod dispatch;
pub mod frame;
pub mod policy_config;
