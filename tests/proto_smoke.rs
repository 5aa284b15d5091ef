use amiwire::proto::*;
#[test]
fn smoke() {
    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/asterisk-22/event-stream-load.raw"
    ))
    .unwrap();
    let t = std::time::Instant::now();
    let (banner, msgs) = decode_all(&data);
    let el = t.elapsed();
    let ok: Vec<_> = msgs.into_iter().map(|m| m.unwrap()).collect();
    let ev = ok.iter().filter(|m| m.is_event()).count();
    eprintln!("{banner:?} {} msgs {} events in {:?}", ok.len(), ev, el);
    assert_eq!(ok.len(), 21829);
    assert_eq!(ev, 21527);
    let total: usize = ok.iter().map(|m| m.raw().len()).sum::<usize>() + banner.unwrap().len() + 2;
    assert_eq!(total, data.len());
    eprintln!("{:?}", ok[5]);
}
