//! Arbitrary bytes as a gzip request body, through the collector's inflation
//! ([`scribble_collector::decompress`]) under a small cap. The inflated body never exceeds the
//! cap, and the cap only ever refuses: a body inflated under it is the same under a larger one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scribble_collector::decompress;

/// Small, so that bombs and bodies just past the cap are within the fuzzer's reach.
const CAP: usize = 4096;

fuzz_target!(|body: &[u8]| {
    let Ok(inflated) = decompress(body, Some("gzip"), CAP) else {
        return;
    };
    assert!(
        inflated.len() <= CAP,
        "{} bytes inflated under a cap of {CAP}",
        inflated.len()
    );
    let uncapped = decompress(body, Some("gzip"), CAP * 16)
        .expect("a body inflated under the cap is refused under a larger one");
    assert_eq!(inflated, uncapped);
});
