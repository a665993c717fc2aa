//! `hourlake produce`: a realistic event generator that writes to Kafka.

mod behaviour;
mod daily_cycle;
mod malformed;
mod population;
mod profile;
mod report;
mod wire;
mod world;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::Args;
use hourlake_catalog::{EventKind, APP_EVENTS_TOPIC, REC_EVENTS_TOPIC};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use daily_cycle::DailyCycle;
pub use report::Report;
use world::{What, World, WorldConfig, MAX_DIURNAL};

/// Options of `hourlake produce`.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "HOURLAKE_BROKERS", default_value = crate::config::DEFAULT_BROKERS)]
    pub brokers: String,
    /// Topic for app-engagement events.
    #[arg(long, alias = "app-topic", default_value = APP_EVENTS_TOPIC)]
    pub topic: String,
    /// Topic for recommendation events (may equal --topic).
    #[arg(long, default_value = REC_EVENTS_TOPIC)]
    pub rec_topic: String,
    /// Partitions for topics this command creates (existing topics are left alone).
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Events per second on average (each is sent when it happens: event time follows the
    /// wall clock); unlimited when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Number of messages to send; forever (until Ctrl-C) when absent.
    #[arg(long)]
    pub count: Option<u64>,
    /// Population size: users with the app installed at any moment, each with a stable
    /// device, country and activity level (users who churn are replaced by new installs).
    /// Their inactivity gaps are sized so the population makes the requested event rate.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Number of distinct items (Zipf-distributed popularity).
    #[arg(long, default_value_t = 20_000)]
    pub items: u64,
    /// Fraction of sessions that end without `session_end` (the app was killed).
    #[arg(long, default_value_t = 0.05)]
    pub killed_fraction: f64,
    /// Amplitude of the daily cycle (0 = flat, up to 0.95): the event rate follows
    /// 1 + A·cos(…) around --rate/--sim-rate, busiest at 19:00 UTC.
    #[arg(long, default_value_t = 0.0)]
    pub diurnal: f64,
    /// Fraction of events sent with an event time 1–48 hours in the past.
    #[arg(long, default_value_t = 0.0)]
    pub late_fraction: f64,
    /// Fraction of events sent a second time (same event_id, same bytes).
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_fraction: f64,
    /// Fraction of messages that are malformed (every kind ingest must dead-letter).
    #[arg(long, default_value_t = 0.0)]
    pub bad_fraction: f64,
    /// Seed of the generator: the same seed and options give the same messages
    /// (event times too, when --start-time is given).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event time at which the simulation starts (RFC 3339). Default: now with --rate,
    /// otherwise early enough that the last event is about now.
    #[arg(long)]
    pub start_time: Option<DateTime<Utc>>,
    /// Simulated events per second of event time (on average) when --rate is absent.
    #[arg(long, default_value_t = 2_000.0)]
    pub sim_rate: f64,
}

const MAX_IN_FLIGHT: usize = 100_000;

/// Sends generated events to Kafka and returns what was delivered.
pub async fn run(args: ProduceArgs) -> anyhow::Result<Report> {
    let events_per_sim_second = args.rate.unwrap_or(args.sim_rate);
    if events_per_sim_second.is_nan() || events_per_sim_second <= 0.0 {
        bail!("--rate and --sim-rate must be positive");
    }
    let step_micros = 1e6 / events_per_sim_second;
    let start_micros = match (args.start_time, args.rate, args.count) {
        (Some(t), _, _) => t.timestamp_micros(),
        (None, None, Some(n)) => {
            ends_now(n as f64 * step_micros, args.diurnal.clamp(0.0, MAX_DIURNAL))
        }
        _ => Utc::now().timestamp_micros(),
    };
    let mut world = World::new(WorldConfig {
        users: args.users,
        items: args.items,
        seed: args.seed,
        start_micros,
        step_micros,
        diurnal: args.diurnal,
        killed_fraction: args.killed_fraction,
        late_fraction: args.late_fraction,
        duplicate_fraction: args.duplicate_fraction,
        bad_fraction: args.bad_fraction,
    })?;
    let sizing = world.sizing();
    tracing::info!(
        users = args.users,
        events_per_session = format!("{:.1}", sizing.events_per_session),
        mean_gap_between_sessions_s = format!("{:.0}", sizing.mean_gap_s),
        time_scale = format!("{:.3}", sizing.time_scale),
        "simulating users (time_scale < 1: too few users for the rate, behaviour sped up)"
    );

    ensure_topics(
        &args.brokers,
        &[&args.topic, &args.rec_topic],
        args.partitions,
    )
    .await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("compression.type", "lz4")
        .set("message.max.bytes", "8388608")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .context("creating the Kafka producer")?;

    let mut report = Report::default();
    let mut in_flight: VecDeque<(What, DeliveryFuture)> = VecDeque::new();
    let started = Instant::now();
    let mut last_log = Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut sent: u64 = 0;
    while args.count.is_none_or(|n| sent < n) {
        let msg = world.next_message();
        if args.rate.is_some() {
            // sent when it happens: event time runs with the wall clock
            let elapsed = u64::try_from(world.elapsed_micros()).unwrap_or(0);
            let due = started + Duration::from_micros(elapsed);
            if due > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = &mut ctrl_c => break,
                }
            }
        }
        let topic = match msg.kind {
            EventKind::Engagement => &args.topic,
            EventKind::Recommendation => &args.rec_topic,
        };
        let mut record = FutureRecord::to(topic).key(&msg.key).payload(&msg.payload);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    in_flight.push_back((msg.what, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    settle_half(&mut in_flight, &mut report).await;
                }
                Err((e, _)) => return Err(e).context("enqueueing a message"),
            }
        }
        sent += 1;
        if in_flight.len() >= MAX_IN_FLIGHT {
            settle_half(&mut in_flight, &mut report).await;
        }
        if last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            tracing::info!(
                sent,
                delivered = report.sent,
                failed = report.failed,
                "producing"
            );
        }
    }
    while let Some((what, delivery)) = in_flight.pop_front() {
        settle(what, delivery, &mut report).await;
    }
    report.elapsed_s = started.elapsed().as_secs_f64();
    if report.failed > 0 {
        bail!(
            "{} of {} messages were not delivered: {}",
            report.failed,
            sent,
            serde_json::to_string(&report)?
        );
    }
    Ok(report)
}

/// A start time such that a run of `activity_micros` on the activity clock ends now.
fn ends_now(activity_micros: f64, diurnal: f64) -> i64 {
    let now = Utc::now().timestamp_micros();
    let mut start = now - activity_micros as i64;
    for _ in 0..3 {
        let span = DailyCycle::new(diurnal, start).real(activity_micros, activity_micros);
        start = now - span as i64;
    }
    start
}

async fn settle_half(in_flight: &mut VecDeque<(What, DeliveryFuture)>, report: &mut Report) {
    let n = in_flight.len().div_ceil(2);
    for _ in 0..n {
        if let Some((what, delivery)) = in_flight.pop_front() {
            settle(what, delivery, report).await;
        }
    }
}

async fn settle(what: What, delivery: DeliveryFuture, report: &mut Report) {
    match delivery.await {
        Ok(Ok(_)) => report.record(what),
        Ok(Err((e, _))) => {
            tracing::warn!(error = %e, "delivery failed");
            report.failed += 1;
        }
        Err(_) => report.failed += 1,
    }
}

/// Creates the topics that do not exist yet, with `partitions` partitions each.
pub async fn ensure_topics(brokers: &str, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating the Kafka admin client")?;
    let mut names: Vec<&str> = topics.to_vec();
    names.sort_unstable();
    names.dedup();
    let new: Vec<NewTopic> = names
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin
        .create_topics(&new, &opts)
        .await
        .context("creating topics")?
    {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}
