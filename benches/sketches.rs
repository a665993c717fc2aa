//! HLL comparison: Apache DataSketches (`datasketches`, what hourlake uses) against
//! `hyperloglogplus` (the crate the original design named), both at precision 12
//! (4 096 registers): insert speed, merge speed, serialized size and error.
//! Run: `cargo bench --bench sketches` (results in benches/RESULTS.md).

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasher;
use std::time::Instant;

use datasketches::hash::value::raw_bytes;
use datasketches::hll::{HllSketch, HllType, HllUnion};
use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Serialize};

/// A fixed-key hasher so hyperloglogplus sketches are deterministic and serializable
/// (its default, `RandomState`, makes stored sketches unmergeable across processes).
#[derive(Clone, Copy, Default, Serialize, Deserialize)]
struct FixedState;

impl BuildHasher for FixedState {
    type Hasher = DefaultHasher;
    fn build_hasher(&self) -> DefaultHasher {
        DefaultHasher::new()
    }
}

type Hllp = HyperLogLogPlus<str, FixedState>;
const P: u8 = 12;

fn values(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("user-{i:09}")).collect()
}

fn ns_per(start: Instant, n: usize) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

fn err(estimate: f64, exact: usize) -> f64 {
    100.0 * (estimate - exact as f64).abs() / exact as f64
}

fn stored_hll4(sketch: &HllSketch) -> Vec<u8> {
    let mut union = HllUnion::new(P).expect("lg_k");
    union.update(sketch);
    union.to_sketch(HllType::Hll4).serialize()
}

fn main() {
    println!("| distinct values | datasketches insert ns | hllp insert ns | datasketches error % | hllp error % | datasketches bytes (HLL_4 / HLL_8) | hllp bytes (serde_json) |");
    println!("|---|---|---|---|---|---|---|");
    for n in [1_000usize, 100_000, 1_000_000, 10_000_000] {
        let vals = values(0, n);
        let t = Instant::now();
        let mut ds = HllSketch::new(P, HllType::Hll8).expect("lg_k");
        for v in &vals {
            ds.update(raw_bytes::from_str(v));
        }
        let ds_ns = ns_per(t, n);
        let t = Instant::now();
        let mut hp = Hllp::new(P, FixedState).expect("precision");
        for v in &vals {
            hp.insert(v.as_str());
        }
        let hp_ns = ns_per(t, n);
        let ds_err = err(ds.estimate(), n);
        let hp_err = err(hp.count(), n);
        let hp_bytes = serde_json::to_vec(&hp).map(|b| b.len()).unwrap_or(0);
        println!(
            "| {n} | {ds_ns:.1} | {hp_ns:.1} | {ds_err:.2} | {hp_err:.2} | {} / {} | {hp_bytes} |",
            stored_hll4(&ds).len(),
            ds.serialize().len()
        );
    }

    // Merge: 200 disjoint sketches of 10 000 values each (2 000 000 distinct).
    let (parts, per) = (200usize, 10_000usize);
    let mut ds_parts = Vec::new();
    let mut hp_parts = Vec::new();
    for p in 0..parts {
        let vals = values(p * per, per);
        let mut ds = HllSketch::new(P, HllType::Hll8).expect("lg_k");
        let mut hp = Hllp::new(P, FixedState).expect("precision");
        for v in &vals {
            ds.update(raw_bytes::from_str(v));
            hp.insert(v.as_str());
        }
        ds_parts.push(ds);
        hp_parts.push(hp);
    }
    let t = Instant::now();
    let mut union = HllUnion::new(P).expect("lg_k");
    for s in &ds_parts {
        union.update(s);
    }
    let ds_merge_us = t.elapsed().as_secs_f64() * 1e6 / parts as f64;
    let t = Instant::now();
    let mut merged = Hllp::new(P, FixedState).expect("precision");
    for s in &hp_parts {
        merged.merge(s).expect("same precision");
    }
    let hp_merge_us = t.elapsed().as_secs_f64() * 1e6 / parts as f64;
    println!();
    println!(
        "merge of {parts} sketches x {per} values: datasketches {ds_merge_us:.1} µs/sketch (error {:.2} %), hyperloglogplus {hp_merge_us:.1} µs/sketch (error {:.2} %)",
        err(union.estimate(), parts * per),
        err(merged.count(), parts * per)
    );
}
