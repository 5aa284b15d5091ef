//! Property tests: chunking never changes the output, encode/decode round-trips, and no input
//! makes the decoder panic, exceed its limits or invent bytes.

#![allow(clippy::unwrap_used)] // tests may unwrap (project standard)

mod proto_support;

use std::sync::OnceLock;

use amiwire::proto::{Action, Decoder, Limits, Message};
use proptest::prelude::*;
use proto_support::*;

/// Every recorded TCP connection stream, with its whole-stream decode.
fn streams() -> &'static [(Vec<u8>, Vec<Message>)] {
    static STREAMS: OnceLock<Vec<(Vec<u8>, Vec<Message>)>> = OnceLock::new();
    STREAMS.get_or_init(|| {
        tcp_fixtures()
            .iter()
            .flat_map(|p| load_jsonl(p))
            .map(|c| {
                let s = c.stream();
                let msgs = decode_chunks([s.as_slice()]).1;
                (s, msgs.into_iter().map(Result::unwrap).collect())
            })
            .collect()
    })
}

/// Cuts `stream` into chunks of the given sizes, cycling through them.
fn cut<'a>(stream: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// Bytes rich in what matters to framing.
fn wire_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b'\r'),
        4 => Just(b'\n'),
        3 => Just(b':'),
        2 => Just(b' '),
        6 => b'a'..=b'z',
        1 => any::<u8>(),
        1 => Just(b'-'),
    ];
    let chunky = prop_oneof![
        byte.prop_map(|b| vec![b]),
        Just(b"Response: Follows\r\n".to_vec()),
        Just(b"--END COMMAND--".to_vec()),
        Just(b"Event: X\r\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
    ];
    proptest::collection::vec(chunky, 0..max).prop_map(|v| v.concat())
}

const SMALL: Limits = Limits {
    max_line: 64,
    max_lines: 8,
    max_message: 256,
};

fn check_invariants(input: &[u8], sizes: &[usize], limits: Limits) -> Result<(), TestCaseError> {
    let mut d = Decoder::with_limits(limits.clone());
    let mut out = Vec::new();
    for chunk in cut(input, sizes) {
        d.feed(chunk);
        d.decode_into(&mut out);
        // A message in progress (plus a CR that may start its closing CRLF) at most.
        prop_assert!(
            d.buffered() <= limits.max_message + 1,
            "buffered {}",
            d.buffered()
        );
    }
    for item in &out {
        match item {
            Ok(m) => {
                let at = m.offset() as usize;
                prop_assert_eq!(input.get(at..at + m.raw().len()), Some(m.raw()));
                prop_assert!(m.raw().len() <= limits.max_message);
                prop_assert!(m.raw().ends_with(b"\n"));
                for h in m.headers() {
                    prop_assert!(h.name.len() < limits.max_line);
                    prop_assert!(!h.name.contains(&b':') && !h.value.contains(&b'\n'));
                }
            }
            Err(e) => {
                prop_assert!(e.message_offset <= e.offset && e.offset <= input.len() as u64);
            }
        }
    }
    // The same bytes whole give the same result.
    let mut whole = Decoder::with_limits(limits);
    whole.feed(input);
    let mut again = Vec::new();
    whole.decode_into(&mut again);
    prop_assert_eq!(&out, &again);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn rechunking_a_fixture_changes_nothing(
        which in 0usize..1000,
        sizes in proptest::collection::vec(1usize..300, 1..40),
    ) {
        let (stream, want) = &streams()[which % streams().len()];
        let got = decode_chunks(cut(stream, &sizes));
        let got: Vec<Message> = got.1.into_iter().map(Result::unwrap).collect();
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            prop_assert_eq!(observed(g), observed(w));
        }
    }

    #[test]
    fn a_truncated_fixture_gives_the_messages_it_holds(which in 0usize..1000, cut_at in 0.0f64..1.0) {
        let (stream, want) = &streams()[which % streams().len()];
        let len = (stream.len() as f64 * cut_at) as usize;
        let got = decode_chunks([&stream[..len]]).1;
        let held: Vec<&Message> = want
            .iter()
            .filter(|m| m.offset() as usize + m.raw().len() <= len)
            .collect();
        prop_assert_eq!(got.len(), held.len());
        for (g, w) in got.iter().zip(held) {
            prop_assert_eq!(g.as_ref().unwrap(), w);
        }
    }

    #[test]
    fn arbitrary_bytes_are_safe(
        input in wire_bytes(400),
        sizes in proptest::collection::vec(1usize..64, 1..10),
    ) {
        check_invariants(&input, &sizes, SMALL)?;
        check_invariants(&input, &sizes, Limits::default())?;
    }

    #[test]
    fn encode_then_decode_round_trips(
        name in "[A-Za-z][A-Za-z0-9]{0,20}",
        id in proptest::option::of("[!-~][ -~]{0,40}"),
        headers in proptest::collection::vec(
            ("[A-Za-z][A-Za-z0-9_-]{0,15}", "[^\r\n\u{0}]{0,60}"),
            0..20,
        ),
    ) {
        let mut action = Action::new(name.clone());
        for (k, v) in &headers {
            if !k.eq_ignore_ascii_case("actionid") {
                action.push(k.clone(), v.clone());
            }
        }
        let bytes = action.to_bytes(id.as_deref()).unwrap();
        let mut d = Decoder::new();
        d.set_expect_banner(false);
        d.feed(&bytes);
        let m = d.next_message().unwrap().unwrap();
        prop_assert!(d.next_message().is_none());
        prop_assert_eq!(m.raw(), &bytes[..]);
        let mut want: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"Action".to_vec(), name.into_bytes())];
        if let Some(id) = id {
            want.push((b"ActionID".to_vec(), id.into_bytes()));
        }
        want.extend(
            action
                .headers()
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
        );
        let got: Vec<(Vec<u8>, Vec<u8>)> =
            m.headers().map(|h| (h.name.to_vec(), h.value.to_vec())).collect();
        prop_assert_eq!(got, want);
    }
}
