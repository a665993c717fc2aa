//! Validated events → Arrow builders of `engagement_events` and `recommendation_events`.
//!
//! Each `append` parses every field first and only then touches the builders, so a
//! message is either appended whole or rejected whole.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Date32Builder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder, StructBuilder, TimestampMicrosecondBuilder,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use hourlake_catalog::{partition, schema, TableId};

use crate::decode::{
    opt_number, opt_str, properties_text, Device, Field, FieldSet, Header, RawFields, RecItem,
};
use crate::first_hour::TableRows;
use crate::message::MessageMeta;
use crate::rejection::{ReasonCode, Rejection};

/// `columns` with their buffers cut to their length. Builders grow by doubling, so a
/// finished chunk would otherwise hold up to twice its rows' bytes (a quarter more on
/// average) for as long as its window waits to be written. Shrinking reallocates in
/// place: nothing is copied.
pub(crate) fn fitted(mut columns: Vec<ArrayRef>) -> Vec<ArrayRef> {
    for column in &mut columns {
        // Just built, so never shared; a shared column would simply stay as it is.
        if let Some(array) = Arc::get_mut(column) {
            array.shrink_to_fit();
        }
    }
    columns
}

/// Columns every event table shares, in schema order at the front and back.
struct Common {
    event_id: StringBuilder,
    event_type: StringBuilder,
    event_time: TimestampMicrosecondBuilder,
    user_id: StringBuilder,
    properties: StringBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    ingested_at: TimestampMicrosecondBuilder,
    event_date: Date32Builder,
    event_hour: Int32Builder,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            event_id: StringBuilder::new(),
            event_type: StringBuilder::new(),
            event_time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            user_id: StringBuilder::new(),
            properties: StringBuilder::new(),
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            ingested_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            event_date: Date32Builder::new(),
            event_hour: Int32Builder::new(),
        }
    }
}

impl Common {
    fn append_head(&mut self, h: &Header<'_>) {
        self.event_id.append_value(&h.event_id);
        self.event_type.append_value(h.event_type.as_str());
        self.event_time.append_value(h.event_time_micros);
        self.user_id.append_value(&h.user_id);
    }

    fn append_tail(&mut self, h: &Header<'_>, properties: Option<&str>, meta: &MessageMeta<'_>) {
        self.properties.append_option(properties);
        self.topic.append_value(meta.topic);
        self.partition.append_value(meta.partition);
        self.offset.append_value(meta.offset);
        self.ingested_at.append_value(meta.ingested_at_micros);
        let (date, hour) = partition::date_and_hour(h.event_time_micros);
        self.event_date.append_value(date);
        self.event_hour.append_value(hour);
    }

    fn head(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.user_id.finish()),
        ]
    }

    fn tail(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.properties.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.ingested_at.finish()),
            Arc::new(self.event_date.finish()),
            Arc::new(self.event_hour.finish()),
        ]
    }
}

/// Top-level wire fields the engagement table has columns for.
const ENGAGEMENT_FIELDS: FieldSet = FieldSet::of(&[
    Field::EventId,
    Field::EventType,
    Field::EventTime,
    Field::UserId,
    Field::SessionId,
    Field::Device,
    Field::Country,
    Field::Screen,
    Field::ItemId,
    Field::Query,
    Field::SessionLengthMs,
    Field::Amount,
    Field::Currency,
    Field::NotificationId,
]);

/// Arrow builders for `engagement_events`.
#[derive(Default)]
pub struct EngagementRows {
    common: Common,
    session_id: StringBuilder,
    device_type: StringBuilder,
    device_os: StringBuilder,
    app_version: StringBuilder,
    country: StringBuilder,
    screen: StringBuilder,
    item_id: StringBuilder,
    query: StringBuilder,
    session_length_ms: Int64Builder,
    amount: Float64Builder,
    currency: StringBuilder,
    notification_id: StringBuilder,
}

fn non_negative(field: &str, v: Option<f64>) -> Result<(), Rejection> {
    match v {
        Some(x) if x < 0.0 || !x.is_finite() => Err(Rejection::new(
            ReasonCode::InvalidValue,
            format!("field `{field}` must be a finite number >= 0, got {x}"),
        )),
        _ => Ok(()),
    }
}

/// An engagement event's own fields, validated.
pub struct EngagementFields<'a> {
    session_id: Option<Cow<'a, str>>,
    device: Option<Device<'a>>,
    country: Option<Cow<'a, str>>,
    screen: Option<Cow<'a, str>>,
    item_id: Option<Cow<'a, str>>,
    query: Option<Cow<'a, str>>,
    session_length_ms: Option<i64>,
    amount: Option<f64>,
    currency: Option<Cow<'a, str>>,
    notification_id: Option<Cow<'a, str>>,
    properties: Option<Cow<'a, str>>,
}

impl<'a> EngagementFields<'a> {
    /// Validates the engagement-specific fields of an event.
    pub fn parse(f: &RawFields<'a>) -> Result<EngagementFields<'a>, Rejection> {
        // Checked in wire-field order, so an event with several faults always gets the
        // same reason.
        let session_id = opt_str(f, Field::SessionId)?;
        let device = f.device()?;
        let country = opt_str(f, Field::Country)?;
        let screen = opt_str(f, Field::Screen)?;
        let item_id = opt_str(f, Field::ItemId)?;
        let query = opt_str(f, Field::Query)?;
        let session_length_ms: Option<i64> = opt_number(f, Field::SessionLengthMs)?;
        non_negative("session_length_ms", session_length_ms.map(|v| v as f64))?;
        let amount: Option<f64> = opt_number(f, Field::Amount)?;
        non_negative("amount", amount)?;
        Ok(EngagementFields {
            session_id,
            device,
            country,
            screen,
            item_id,
            query,
            session_length_ms,
            amount,
            currency: opt_str(f, Field::Currency)?,
            notification_id: opt_str(f, Field::NotificationId)?,
            properties: properties_text(f, ENGAGEMENT_FIELDS)?,
        })
    }
}

impl EngagementRows {
    /// Validates the engagement-specific fields and appends the row.
    pub fn append(
        &mut self,
        f: &RawFields<'_>,
        h: &Header<'_>,
        meta: &MessageMeta<'_>,
    ) -> Result<(), Rejection> {
        let e = EngagementFields::parse(f)?;
        self.common.append_head(h);
        self.session_id.append_option(e.session_id);
        let (kind, os, version) = match e.device {
            Some(d) => (d.kind, d.os, d.app_version),
            None => (None, None, None),
        };
        self.device_type.append_option(kind);
        self.device_os.append_option(os);
        self.app_version.append_option(version);
        self.country.append_option(e.country);
        self.screen.append_option(e.screen);
        self.item_id.append_option(e.item_id);
        self.query.append_option(e.query);
        self.session_length_ms.append_option(e.session_length_ms);
        self.amount.append_option(e.amount);
        self.currency.append_option(e.currency);
        self.notification_id.append_option(e.notification_id);
        self.common.append_tail(h, e.properties.as_deref(), meta);
        Ok(())
    }

    /// Rows buffered so far.
    pub fn len(&self) -> usize {
        self.session_id.len()
    }
}

impl TableRows for EngagementRows {
    /// Whether no row is buffered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the buffered rows as a batch with the table's schema.
    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns = self.common.head();
        columns.extend([
            Arc::new(self.session_id.finish()) as ArrayRef,
            Arc::new(self.device_type.finish()),
            Arc::new(self.device_os.finish()),
            Arc::new(self.app_version.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.screen.finish()),
            Arc::new(self.item_id.finish()),
            Arc::new(self.query.finish()),
            Arc::new(self.session_length_ms.finish()),
            Arc::new(self.amount.finish()),
            Arc::new(self.currency.finish()),
            Arc::new(self.notification_id.finish()),
        ]);
        columns.extend(self.common.tail());
        RecordBatch::try_new(TableId::EngagementEvents.schema(), fitted(columns))
    }
}

/// Top-level wire fields the recommendation table has columns for.
const RECOMMENDATION_FIELDS: FieldSet = FieldSet::of(&[
    Field::EventId,
    Field::EventType,
    Field::EventTime,
    Field::UserId,
    Field::RequestId,
    Field::ModelVersion,
    Field::Surface,
    Field::Items,
    Field::ItemId,
    Field::Rank,
]);

/// Arrow builders for `recommendation_events`.
pub struct RecommendationRows {
    common: Common,
    request_id: StringBuilder,
    model_version: StringBuilder,
    surface: StringBuilder,
    items: ListBuilder<StructBuilder>,
    item_id: StringBuilder,
    rank: Int32Builder,
}

impl Default for RecommendationRows {
    fn default() -> Self {
        let items = ListBuilder::new(StructBuilder::from_fields(schema::rec_item_fields(), 0))
            .with_field(schema::rec_items_element());
        RecommendationRows {
            common: Common::default(),
            request_id: StringBuilder::new(),
            model_version: StringBuilder::new(),
            surface: StringBuilder::new(),
            items,
            item_id: StringBuilder::new(),
            rank: Int32Builder::new(),
        }
    }
}

/// A recommendation event's own fields, validated.
pub struct RecommendationFields<'a> {
    request_id: Option<Cow<'a, str>>,
    model_version: Option<Cow<'a, str>>,
    surface: Option<Cow<'a, str>>,
    items: Option<Cow<'a, [RecItem<'a>]>>,
    item_id: Option<Cow<'a, str>>,
    rank: Option<i32>,
    properties: Option<Cow<'a, str>>,
}

impl<'a> RecommendationFields<'a> {
    /// Validates the recommendation-specific fields of an event.
    pub fn parse(f: &'a RawFields<'a>) -> Result<RecommendationFields<'a>, Rejection> {
        Ok(RecommendationFields {
            request_id: opt_str(f, Field::RequestId)?,
            model_version: opt_str(f, Field::ModelVersion)?,
            surface: opt_str(f, Field::Surface)?,
            items: f.items()?,
            item_id: opt_str(f, Field::ItemId)?,
            rank: opt_number(f, Field::Rank)?,
            properties: properties_text(f, RECOMMENDATION_FIELDS)?,
        })
    }
}

impl RecommendationRows {
    /// Validates the recommendation-specific fields and appends the row.
    pub fn append(
        &mut self,
        f: &RawFields<'_>,
        h: &Header<'_>,
        meta: &MessageMeta<'_>,
    ) -> Result<(), Rejection> {
        let r = RecommendationFields::parse(f)?;
        self.common.append_head(h);
        self.request_id.append_option(r.request_id);
        self.model_version.append_option(r.model_version);
        self.surface.append_option(r.surface);
        match r.items {
            Some(items) => {
                let entries = self.items.values();
                for item in items.iter() {
                    append_item(entries, item);
                }
                self.items.append(true);
            }
            None => self.items.append(false),
        }
        self.item_id.append_option(r.item_id);
        self.rank.append_option(r.rank);
        self.common.append_tail(h, r.properties.as_deref(), meta);
        Ok(())
    }

    /// Rows buffered so far.
    pub fn len(&self) -> usize {
        self.request_id.len()
    }
}

impl TableRows for RecommendationRows {
    /// Whether no row is buffered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the buffered rows as a batch with the table's schema.
    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns = self.common.head();
        columns.extend([
            Arc::new(self.request_id.finish()) as ArrayRef,
            Arc::new(self.model_version.finish()),
            Arc::new(self.surface.finish()),
            Arc::new(self.items.finish()),
            Arc::new(self.item_id.finish()),
            Arc::new(self.rank.finish()),
        ]);
        columns.extend(self.common.tail());
        RecordBatch::try_new(TableId::RecommendationEvents.schema(), fitted(columns))
    }
}

fn append_item(entries: &mut StructBuilder, item: &RecItem<'_>) {
    if let Some(b) = entries.field_builder::<StringBuilder>(0) {
        b.append_value(&item.item_id);
    }
    if let Some(b) = entries.field_builder::<Float64Builder>(1) {
        b.append_option(item.score);
    }
    if let Some(b) = entries.field_builder::<Int32Builder>(2) {
        b.append_option(item.rank);
    }
    entries.append(true);
}
