//! The INI store: parsing never panics; a parsed file either is refused by the encrypted-file
//! writer or reads back from it unchanged (the writer checks that itself; this drives it), and
//! encrypted-file loading (the flattened `[sops]` section) never panics.
#![no_main]

use credseal::sops::ini;
use credseal::sops::store::{self, Format};
use credseal::sops::tree::Map;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = store::load_encrypted(data, Format::Ini);
    let Ok(map) = ini::parse(data) else {
        return;
    };
    let _ = ini::emit(&map);
    let Ok(out) = ini::emit_encrypted(&map, &Map::new()) else {
        return;
    };
    let mut again = ini::parse(&out).expect("the writer's own check read it back");
    let meta = ini::take_metadata(&mut again).expect("an empty [sops] section");
    assert!(meta.is_some(), "the [sops] section is found again");
});
