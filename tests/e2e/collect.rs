//! `hourlake collect` against a real broker: a batch is answered 2xx only once Kafka
//! holds every accepted event — across `kill -9`s of the collector, with the broker
//! stopped, and under bad requests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use hourlake_testkit::binary::{Daemon, Hourlake};
use hourlake_testkit::http::{http_get, metric};
use hourlake_testkit::kafka;
use hourlake_testkit::lake::{query, wait_exactly_once};
use hourlake_testkit::setup::Setup;
use serde_json::{json, Value};

use crate::hourlake;

/// A port nobody listens on right now, so a restarted collector keeps its address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `hourlake collect` on `addr` into `setup`'s topics, with `extra` flags.
fn start_collector(hourlake: &Hourlake, setup: &Setup, addr: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "collect",
        "--brokers",
        &setup.bootstrap,
        "--collect-http",
        addr,
        "--engagement-topic",
        &setup.app,
        "--recommendation-topic",
        &setup.rec,
    ];
    args.extend_from_slice(extra);
    let daemon = hourlake.daemon("collect", &setup.lake_path(), &args);
    daemon.logged_addr("collecting events on http://");
    daemon
}

/// One batch of a test client: its events, and what the collector must answer.
struct Batch {
    body: Vec<u8>,
    gzip: bool,
    /// Event ids of the valid events.
    valid: Vec<String>,
    /// Index and reason code of each invalid event.
    invalid: Vec<(usize, String)>,
}

/// Batch `b` of `n` events two hours ago: engagement and recommendation events of 40
/// users, every 7th missing its `user_id`, every 11th not JSON (NDJSON batches) or not
/// an object (JSON arrays). Batches alternate JSON array / NDJSON, every third is gzip.
fn batch(prefix: &str, b: usize, n: usize) -> Batch {
    let base_ms = chrono::Utc::now().timestamp_millis() - 2 * 3_600_000;
    let ndjson = b % 2 == 1;
    let (mut valid, mut invalid, mut texts) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let id = format!("{prefix}-{b}-{i}");
        let kind = ["click", "screen_view", "rec_impression", "purchase"][i % 4];
        let mut event = json!({
            "event_id": id, "event_type": kind, "event_time": base_ms + (b * n + i) as i64,
            "user_id": format!("user-{}", i % 40), "screen": "home", "item_id": "item-1",
        });
        if kind == "purchase" {
            event["amount"] = json!(1.5);
        }
        if i % 11 == 3 {
            texts.push(if ndjson {
                "{not json".into()
            } else {
                "\"not an object\"".into()
            });
            invalid.push((i, "bad_json".to_string()));
            continue;
        }
        if i % 7 == 2 {
            event.as_object_mut().expect("object").remove("user_id");
            invalid.push((i, "missing_field".to_string()));
        } else {
            valid.push(id);
        }
        texts.push(event.to_string());
    }
    let text = if ndjson {
        texts.join("\n")
    } else {
        format!("[{}]", texts.join(","))
    };
    let gzip = b.is_multiple_of(3);
    let body = if gzip {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).expect("gzip");
        e.finish().expect("gzip")
    } else {
        text.into_bytes()
    };
    Batch {
        body,
        gzip,
        valid,
        invalid,
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    batch: &Batch,
) -> reqwest::Result<reqwest::Response> {
    let mut request = client.post(url).body(batch.body.clone());
    if batch.gzip {
        request = request.header("Content-Encoding", "gzip");
    }
    request.send().await
}

/// Checks a 200's answer against what the batch holds.
fn check_answer(batch: &Batch, answer: &Value) {
    assert_eq!(answer["accepted"], json!(batch.valid.len()), "{answer}");
    let rejected: Vec<(usize, String)> = answer["rejected"]
        .as_array()
        .expect("rejected list")
        .iter()
        .map(|r| {
            assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
            (
                r["index"].as_u64().expect("index") as usize,
                r["reason_code"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    assert_eq!(rejected, batch.invalid);
}

/// Every event id of the lake's event tables, with how many rows carry it.
async fn lake_event_ids(setup: &Setup) -> BTreeMap<String, u64> {
    let mut ids = BTreeMap::new();
    let sql = "SELECT event_id FROM engagement_events \
               UNION ALL SELECT event_id FROM recommendation_events";
    for b in query(&setup.lake, sql).await {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
            .expect("event ids as text");
        let col = arrow::array::AsArray::as_string::<i32>(&col);
        for id in col.iter().flatten() {
            *ids.entry(id.to_string()).or_default() += 1;
        }
    }
    ids
}

/// A client sends batches while the collector is `kill -9`ed four times and restarted,
/// resending every batch until it gets a 2xx. Every event of a 2xx is in Kafka (the lake
/// matches the topics offset for offset), and after compaction in the lake exactly once;
/// no event is missing; each 2xx names the invalid events by index and reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_reach_the_lake_exactly_once_across_collector_kills() {
    let setup = Setup::new(&kafka::shared().bootstrap, 3).await;
    let hourlake = hourlake();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut collector = start_collector(&hourlake, &setup, &addr, &[]);
    let url = format!("http://{addr}/v1/events");
    let prefix = hourlake_testkit::unique("ev");

    const BATCHES: usize = 40;
    const BATCH_EVENTS: usize = 400;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sender = {
        let (url, prefix, progress) = (url.clone(), prefix.clone(), progress.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let (mut acknowledged, mut failed_attempts) = (BTreeSet::new(), 0u32);
            for b in 0..BATCHES {
                let batch = batch(&prefix, b, BATCH_EVENTS);
                loop {
                    match post(&client, &url, &batch).await {
                        Ok(r) if r.status().is_success() => {
                            let answer: Value = r.json().await.expect("JSON answer");
                            check_answer(&batch, &answer);
                            acknowledged.extend(batch.valid.iter().cloned());
                            break;
                        }
                        Ok(r) => {
                            let status = r.status();
                            assert!(
                                status.is_server_error() || status.as_u16() == 429,
                                "{status}"
                            );
                            failed_attempts += 1;
                        }
                        Err(_) => failed_attempts += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                progress.store(b + 1, std::sync::atomic::Ordering::SeqCst);
            }
            (acknowledged, failed_attempts)
        })
    };
    // kill -9 a few milliseconds after batches 8, 16, 24 and 32 were acknowledged: the
    // next batch is then being read, checked or produced (some of its events may be in
    // Kafka without a 2xx; the client resends them, compaction removes the copies)
    for (k, delay_ms) in [(1, 2), (2, 6), (3, 12), (4, 20)] {
        while progress.load(std::sync::atomic::Ordering::SeqCst) < 8 * k {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        collector.kill9();
        tokio::time::sleep(Duration::from_millis(200)).await;
        collector = start_collector(&hourlake, &setup, &addr, &[]);
    }
    let (acknowledged, failed_attempts) = sender.await.expect("sender");
    assert!(
        failed_attempts > 0,
        "no request met a dead collector: the kills proved nothing"
    );
    let expected_valid: usize = (0..BATCHES)
        .map(|b| batch(&prefix, b, BATCH_EVENTS).valid.len())
        .sum();
    assert_eq!(acknowledged.len(), expected_valid);

    let (_, metrics) = http_get(&addr, "/metrics");
    assert!(metric(&metrics, "hourlake_collector_accepted_events_total") > 0.0);
    assert!(metric(&metrics, "hourlake_collector_rejected_events_total") > 0.0);
    let (_, minutes) = http_get(&addr, "/v1/accepted");
    let minutes: Value = serde_json::from_str(&minutes).expect("JSON");
    let counted: u64 = minutes["minutes"]
        .as_array()
        .expect("minutes")
        .iter()
        .map(|m| m["accepted"].as_u64().expect("count"))
        .sum();
    assert!(counted > 0 && counted <= expected_valid as u64, "{minutes}");
    drop(collector);

    // Kafka holds what was acknowledged: ingest it all (offset for offset), compact.
    let ingest = setup.ingest(&hourlake, &[]);
    wait_exactly_once(
        &setup.lake,
        &setup.bootstrap,
        &setup.topics(),
        Duration::from_secs(120),
    )
    .await;
    drop(ingest);
    let before = lake_event_ids(&setup).await;
    eprintln!(
        "{failed_attempts} failed attempts; before compaction {} rows of {} events",
        before.values().sum::<u64>(),
        before.len()
    );
    assert_eq!(
        before.keys().cloned().collect::<BTreeSet<_>>(),
        acknowledged
    );
    let status = hourlake
        .command()
        .args([
            "compact",
            "--lake",
            &setup.lake_arg(),
            "--closed-after-secs",
            "0",
        ])
        .status()
        .expect("compact");
    assert!(status.success());
    let after = lake_event_ids(&setup).await;
    let doubled: Vec<_> = after.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "events in the lake twice after compaction: {doubled:?}"
    );
    assert_eq!(after.keys().cloned().collect::<BTreeSet<_>>(), acknowledged);
}

/// With its broker stopped the collector answers 503 (with `Retry-After`) once the
/// produce timeout passes, never a 2xx; when the broker is back, batches are accepted
/// again, and every batch that got a 200 is in the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_gives_503_never_2xx_and_recovers() {
    let broker = kafka::dedicated("collect-down");
    let setup = Setup::new(&broker.bootstrap, 1).await;
    let hourlake = hourlake();
    let addr = format!("127.0.0.1:{}", free_port());
    let _collector = start_collector(
        &hourlake,
        &setup,
        &addr,
        &["--produce-timeout-ms", "3000", "--max-queued-events", "60"],
    );
    let url = format!("http://{addr}/v1/events");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let prefix = hourlake_testkit::unique("down");
    let mut acknowledged = BTreeSet::new();

    let first = batch(&prefix, 1, 50);
    let r = post(&client, &url, &first).await.expect("answer");
    assert_eq!(r.status(), 200);
    acknowledged.extend(first.valid.iter().cloned());

    broker.stop();
    // A batch waits for a broker that is gone (38 valid events queued)...
    let waiting = {
        let (client, url, down) = (client.clone(), url.clone(), batch(&prefix, 2, 50));
        tokio::spawn(async move {
            let started = Instant::now();
            let r = post(&client, &url, &down).await.expect("answer");
            (
                r.status(),
                r.headers().contains_key("retry-after"),
                started.elapsed(),
                r.json::<Value>().await,
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = http_get(&addr, "/metrics");
        if metric(&metrics, "hourlake_collector_queued_events") >= 38.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first batch never queued:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...so the next one does not fit in the queue (60 events): 429, nothing dropped
    let r = post(&client, &url, &batch(&prefix, 3, 50))
        .await
        .expect("answer");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    // and the waiting one gets 503 once the produce timeout passes, never a 2xx
    let (status, retry_after, elapsed, body) = waiting.await.expect("waiting batch");
    assert_eq!(status, 503, "with the broker stopped");
    assert!(retry_after);
    // not before the produce timeout: librdkafka kept trying until then
    assert!(elapsed >= Duration::from_millis(2900), "{elapsed:?}");
    let body = body.expect("JSON error");
    assert_eq!(body["error"]["code"], "kafka_unavailable", "{body}");

    broker.restart_stopped();
    let back = batch(&prefix, 4, 50);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = post(&client, &url, &back).await.expect("answer");
        if r.status() == 200 {
            break;
        }
        // while the broker comes back: 503, or 429 while the timed-out batches still
        // count against the producer queue — never a 2xx before Kafka acknowledged
        assert!(matches!(r.status().as_u16(), 503 | 429), "{}", r.status());
        assert!(Instant::now() < deadline, "the collector never recovered");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    acknowledged.extend(back.valid.iter().cloned());

    // every acknowledged event is in the topics
    let mut in_kafka = BTreeSet::new();
    let consumer = kafka::consumer_from_start(
        &setup.bootstrap,
        [(setup.app.as_str(), 0), (setup.rec.as_str(), 0)],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !acknowledged.is_subset(&in_kafka) && Instant::now() < deadline {
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::Message;
        if let Some(Ok(m)) = BaseConsumer::poll(&consumer, Duration::from_millis(200)) {
            let event: Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("event JSON");
            in_kafka.insert(event["event_id"].as_str().expect("id").to_string());
        }
    }
    let missing: Vec<_> = acknowledged.difference(&in_kafka).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in Kafka: {missing:?}"
    );
}

/// Requests a client can get wrong, each with its own clear answer; the collector keeps
/// serving after all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_answers() {
    let setup = Setup::new(&kafka::shared().bootstrap, 1).await;
    let hourlake = hourlake();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = setup.dir.path().join("collect.toml");
    std::fs::write(
        &config,
        "[collector]\nclient_timeout_ms = 1500\nmax_batch_events = 100\n",
    )
    .expect("config");
    let config = config.to_str().expect("utf-8").to_string();
    let _collector = start_collector(
        &hourlake,
        &setup,
        &addr,
        &[
            "--config",
            &config,
            "--collect-token",
            "s3cret",
            "--collect-max-body-kb",
            "64",
        ],
    );
    let url = format!("http://{addr}/v1/events");
    // A new connection per request: the collector closes idle keep-alive connections
    // after the (short) client timeout set above, and a POST sent on a pooled
    // connection just as the server closes it fails with no answer at all.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let good = batch(&hourlake_testkit::unique("bad"), 2, 20);
    let send = |body: Vec<u8>, headers: Vec<(&'static str, &'static str)>| {
        let mut r = client.post(&url).body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    let auth = ("Authorization", "Bearer s3cret");
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or_default().to_string();

    // no token, a wrong token
    for headers in [vec![], vec![("Authorization", "Bearer nope")]] {
        let r = send(good.body.clone(), headers).await.expect("answer");
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    // unreadable bodies: a broken array, an empty body, broken gzip
    for (body, headers) in [
        (b"[{\"event_id\": 1},".to_vec(), vec![auth]),
        (b"  ".to_vec(), vec![auth]),
        (
            b"not gzip".to_vec(),
            vec![auth, ("Content-Encoding", "gzip")],
        ),
    ] {
        let r = send(body, headers).await.expect("answer");
        assert_eq!(r.status(), 400);
        assert_eq!(code(&r.json().await.expect("JSON")), "unreadable_body");
    }
    // an encoding it does not know
    let r = send(good.body.clone(), vec![auth, ("Content-Encoding", "br")])
        .await
        .expect("answer");
    assert_eq!(r.status(), 415);
    // too large: declared, chunked (no length), expanding gzip, too many events
    let big = vec![b' '; 65 * 1024];
    let r = send(big.clone(), vec![auth]).await.expect("answer");
    assert_eq!(r.status(), 413);
    // chunked, so no length is declared up front
    let mut chunked = std::net::TcpStream::connect(&addr).expect("connect");
    let _ = write!(
        chunked,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..65 {
        if write!(chunked, "400\r\n{}\r\n", " ".repeat(1024)).is_err() {
            break; // answered and closed early
        }
    }
    let _ = write!(chunked, "0\r\n\r\n");
    let mut answer = String::new();
    let _ = chunked.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![b' '; 4 * 1024 * 1024]).expect("gzip");
    let bomb = e.finish().expect("gzip");
    assert!(bomb.len() < 64 * 1024);
    let r = send(bomb, vec![auth, ("Content-Encoding", "gzip")])
        .await
        .expect("answer");
    assert_eq!(r.status(), 413);
    let many = "{}\n".repeat(101).into_bytes();
    let r = send(many, vec![auth]).await.expect("answer");
    assert_eq!(r.status(), 413);
    assert_eq!(code(&r.json().await.expect("JSON")), "too_large");
    // wrong method, unknown path
    assert_eq!(client.get(&url).send().await.expect("answer").status(), 405);
    assert_eq!(
        client
            .post(format!("http://{addr}/v2/events"))
            .send()
            .await
            .expect("answer")
            .status(),
        404
    );
    // a client that stops sending its body is cut off, not waited for
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        slow,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 1000\r\n\r\n[{{"
    )
    .expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "a stalled body must be cut off: {answer:?}"
    );
    // and the collector still accepts good batches, with the right answer
    let r = send(good.body.clone(), vec![auth]).await.expect("answer");
    assert_eq!(r.status(), 200);
    check_answer(&good, &r.json().await.expect("JSON"));
    let (_, metrics) = http_get(&addr, "/metrics");
    assert!(
        metric(&metrics, "hourlake_collector_requests_total") >= 12.0,
        "{metrics}"
    );
}
