//! Decode throughput on the recorded load capture (8 MB, 21 829 messages), fed in 64 KiB
//! chunks as a socket reader would. Run: `cargo bench --no-default-features --bench decode`.

use std::hint::black_box;

use amiwire::proto::Decoder;
use criterion::{Criterion, Throughput, criterion_group};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/asterisk-22/event-stream-load.raw"
);

fn decode(stream: &[u8]) -> usize {
    let mut decoder = Decoder::new();
    let mut count = 0;
    for chunk in stream.chunks(64 * 1024) {
        decoder.feed(chunk);
        while let Some(item) = decoder.next_message() {
            black_box(&item);
            count += 1;
        }
    }
    count
}

fn bench_decode(c: &mut Criterion) {
    let stream = std::fs::read(CAPTURE).expect("the load capture in ../shared/fixtures");
    assert_eq!(decode(&stream), 21_829);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.sample_size(20);
    group.bench_function("event-stream-load 64KiB chunks", |b| {
        b.iter(|| decode(black_box(&stream)))
    });
    group.finish();
}

criterion_group!(benches, bench_decode);

/// `DECODE_MIN_OF=N` skips criterion and prints the best of N runs: on a shared machine the
/// minimum is the number least disturbed by other processes.
fn main() {
    if let Some(runs) = std::env::var("DECODE_MIN_OF")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
    {
        let stream = std::fs::read(CAPTURE).expect("the load capture");
        let best = (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                black_box(decode(black_box(&stream)));
                t.elapsed()
            })
            .min()
            .unwrap_or_default();
        let gbps = stream.len() as f64 / best.as_secs_f64() / 1e9;
        println!(
            "best of {runs}: {best:?} for {} bytes = {gbps:.3} GB/s",
            stream.len()
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
