//! What keeping live state costs beside decoding alone, on the recorded load capture (21 829
//! messages, 1 050 channels from birth to hangup), and what reading a view of 10,000 live channels
//! costs. Run: `cargo bench --no-default-features --bench live`; `LIVE_MIN_OF=N` prints the best
//! of N runs of each instead (the least disturbed numbers on a shared machine) and their ratio;
//! `LIVE_ONE_PASS=decode|state` runs one pass of one side (for callgrind).

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use amiwire::proto::live::{LiveConfig, LiveState, View};
use amiwire::proto::{Decoder, Message};
use criterion::{Criterion, Throughput, criterion_group};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/asterisk-22/event-stream-load.raw"
);
const VIEW_CHANNELS: usize = 10_000;

/// Decodes the stream in 64 KiB chunks, as a socket reader would, handing each message to `each`.
fn replay(stream: &[u8], mut each: impl FnMut(&Message)) -> usize {
    let mut decoder = Decoder::new();
    let mut count = 0;
    for chunk in stream.chunks(64 * 1024) {
        decoder.feed(chunk);
        while let Some(Ok(msg)) = decoder.next_message() {
            each(&msg);
            count += 1;
        }
    }
    count
}

fn decode_only(stream: &[u8]) -> usize {
    replay(stream, |msg| {
        black_box(msg);
    })
}

fn decode_and_keep_state(stream: &[u8]) -> usize {
    let mut state = LiveState::new(LiveConfig::default());
    let now = SystemTime::UNIX_EPOCH;
    let count = replay(stream, |msg| {
        black_box(state.apply(msg, now));
    });
    assert!(
        state.view().is_empty(),
        "the capture ends with every call over"
    );
    count
}

/// A state holding `n` live channels, each born by its own `Newchannel`.
fn state_with_channels(n: usize) -> LiveState {
    let mut state = LiveState::new(LiveConfig::default());
    for i in 0..n {
        let text = format!(
            "Event: Newchannel\r\nChannel: PJSIP/{i}-{i:08x}\r\nChannelState: 6\r\n\
             ChannelStateDesc: Up\r\nCallerIDNum: {i}\r\nCallerIDName: Agent {i}\r\n\
             ConnectedLineNum: <unknown>\r\nConnectedLineName: <unknown>\r\nLanguage: en\r\n\
             AccountCode: \r\nContext: from-internal\r\nExten: {i}\r\nPriority: 1\r\n\
             Uniqueid: 1796567608.{i}\r\nLinkedid: 1796567608.{}\r\n\r\n",
            i - i % 2
        );
        if let Some(msg) = Message::parse_one(text.as_bytes()) {
            state.apply(&msg, SystemTime::UNIX_EPOCH);
        }
    }
    state
}

/// What a wallboard does: take a view and read every channel's name, state and caller ID.
fn read_view(view: &View) -> usize {
    view.channels()
        .values()
        .map(|c| c.name.len() + usize::from(c.state.0) + c.caller_id.number.len())
        .sum()
}

fn bench_live(c: &mut Criterion) {
    let stream = std::fs::read(CAPTURE).expect("the load capture in ../shared/fixtures");
    let mut group = c.benchmark_group("live");
    group.throughput(Throughput::Elements(decode_only(&stream) as u64));
    group.sample_size(20);
    group.bench_function("decode only", |b| {
        b.iter(|| decode_only(black_box(&stream)))
    });
    group.bench_function("decode + live state", |b| {
        b.iter(|| decode_and_keep_state(black_box(&stream)))
    });
    group.finish();

    let state = state_with_channels(VIEW_CHANNELS);
    c.bench_function("live/view of 10,000 channels, read whole", |b| {
        b.iter(|| read_view(&state.view()))
    });
}

criterion_group!(benches, bench_live);

/// The process's resident set (Linux `/proc/self/statm`, 4 KiB pages), 0 elsewhere.
fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn best_of(runs: u32, mut run: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    // One pass of one side, for `valgrind --tool=callgrind`: instruction counts do not move with
    // the neighbours on a shared machine.
    if let Ok(side) = std::env::var("LIVE_ONE_PASS") {
        let stream = std::fs::read(CAPTURE).expect("the load capture");
        match side.as_str() {
            "state" => black_box(decode_and_keep_state(&stream)),
            _ => black_box(decode_only(&stream)),
        };
        return;
    }
    if let Some(runs) = std::env::var("LIVE_MIN_OF")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
    {
        let stream = std::fs::read(CAPTURE).expect("the load capture");
        let messages = decode_only(&stream) as f64;
        // Interleaved so that both see the same neighbours on a shared machine.
        let (mut decode, mut keep) = (Duration::MAX, Duration::MAX);
        for _ in 0..runs {
            decode = decode.min(best_of(1, || {
                black_box(decode_only(black_box(&stream)));
            }));
            keep = keep.min(best_of(1, || {
                black_box(decode_and_keep_state(black_box(&stream)));
            }));
        }
        let per = |d: Duration| d.as_secs_f64() * 1e9 / messages;
        println!(
            "best of {runs}: decode {decode:?} ({:.0} ns/msg), decode + state {keep:?} \
             ({:.0} ns/msg): state adds {:.1} %",
            per(decode),
            per(keep),
            (keep.as_secs_f64() / decode.as_secs_f64() - 1.0) * 100.0
        );
        let before = resident_bytes();
        let state = state_with_channels(VIEW_CHANNELS);
        let grown = resident_bytes().saturating_sub(before);
        let read = best_of(runs, || {
            black_box(read_view(&state.view()));
        });
        println!("view of {VIEW_CHANNELS} channels taken and read whole: {read:?}");
        println!(
            "{VIEW_CHANNELS} live channels grew the resident set by {:.1} MB, {} bytes each",
            grown as f64 / 1e6,
            grown / VIEW_CHANNELS
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
