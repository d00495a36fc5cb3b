//! Fuzz the GGUF header parser: any input must yield a header or an error, never a panic, and
//! a parsed header must describe only bytes inside the input.
#![no_main]

use edgeinfer_gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = GgufFile::from_bytes(data.to_vec()) {
        for info in f.tensor_infos() {
            let t = f.view(info).expect("validated tensor must be viewable");
            assert_eq!(t.data().len(), info.n_bytes);
        }
        for (k, _) in f.metadata().iter() {
            let _ = f.metadata().get_str(k);
            let _ = f.metadata().get_usize(k);
        }
    }
});
