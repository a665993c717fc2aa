//! Parses the same messages with serde_json (what ingest uses), simd-json and sonic-rs,
//! each doing the first pass ingest needs: every top-level field found and its value
//! kept (raw text, or a parsed tape for simd-json). Prints µs per message per round.
//!
//! Messages come from the ingest bench:
//! `HOURLAKE_BENCH_DUMP=/tmp/messages.jsonl HOURLAKE_BENCH_TOPICS=APP,REC cargo bench --bench ingest -- stages`
//! then `cargo run --release --manifest-path benches/json-parsers/Cargo.toml -- /tmp/messages.jsonl`.

use std::borrow::Cow;
use std::fmt;
use std::time::Instant;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Top-level fields as raw JSON text: the shape of ingest's `RawFields`.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::with_capacity(16);
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    fields.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

fn per_message(n: usize, f: impl FnOnce() -> usize) -> (f64, usize) {
    let start = Instant::now();
    let checksum = f();
    (start.elapsed().as_secs_f64() * 1e6 / n as f64, checksum)
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: json-parsers-bench MESSAGES.jsonl");
        std::process::exit(2);
    };
    let data = match std::fs::read(&path) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let messages: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|m| !m.is_empty())
        .collect();
    let n = messages.len();
    println!(
        "{n} messages, {:.0} bytes on average",
        data.len() as f64 / n.max(1) as f64
    );
    for round in 1..=5 {
        let (serde, a) = per_message(n, || {
            messages
                .iter()
                .filter_map(|m| std::str::from_utf8(m).ok())
                .filter_map(|text| serde_json::from_str::<Fields<'_>>(text).ok())
                .map(|f| f.0.len())
                .sum()
        });
        let (sonic, b) = per_message(n, || {
            let mut fields = 0;
            for text in messages.iter().filter_map(|m| std::str::from_utf8(m).ok()) {
                for field in sonic_rs::to_object_iter(text) {
                    match field {
                        Ok((_key, value)) => fields += usize::from(!value.as_raw_str().is_empty()),
                        Err(_) => break,
                    }
                }
            }
            fields
        });
        let (simd, c) = per_message(n, || {
            // simd-json parses in place, so each message is copied first (ingest would too:
            // a dead letter needs the original bytes).
            let (mut scratch, mut buffers) =
                (Vec::with_capacity(4096), simd_json::Buffers::default());
            let mut nodes = 0;
            for m in &messages {
                scratch.clear();
                scratch.extend_from_slice(m);
                if let Ok(tape) = simd_json::to_tape_with_buffers(&mut scratch, &mut buffers) {
                    nodes += tape.0.len();
                }
            }
            nodes
        });
        println!(
            "round {round}: serde_json raw fields {serde:.3} µs/message ({a} fields); \
             sonic-rs object iter {sonic:.3} µs ({b} fields); simd-json tape {simd:.3} µs ({c} nodes)"
        );
    }
}
