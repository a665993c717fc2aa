//! What Flight SQL clients ask before they query: server capabilities (`GetSqlInfo`),
//! the SQL types (`GetXdbcTypeInfo`), catalogs, schemas, tables and their columns; and
//! the plain Arrow types every result is sent in.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, FieldRef, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_flight::sql::metadata::{
    GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData,
    XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity, XdbcDataType,
    XdbcDatetimeSubcode,
};
use datafusion::datasource::TableType;
use datafusion::prelude::SessionContext;
use hourlake_sql::dialect::{DATETIME_FUNCTIONS, KEYWORDS, NUMERIC_FUNCTIONS, STRING_FUNCTIONS};

/// The server's answers to `GetSqlInfo`: who it is and which SQL it speaks.
pub static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "hourlake");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow IPC format version (Schema.fbs MetadataVersion V5).
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(
        SqlInfo::SqlSystemFunctions,
        &["current_schema", "version"][..],
    );
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlMaxColumnNameLength, 0i64);
    b.append(SqlInfo::SqlMaxColumnsInGroupBy, 0i64);
    b.append(SqlInfo::SqlMaxColumnsInSelect, 0i64);
    b.append(SqlInfo::SqlMaxStatementLength, 0i64);
    b.append(SqlInfo::SqlMaxTableNameLength, 0i64);
    // A static table of literals: it always builds.
    b.build()
        .unwrap_or_else(|e| panic!("static SqlInfo table: {e}"))
});

/// The SQL types results use, as `GetXdbcTypeInfo` describes them to JDBC/ODBC.
pub static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let numeric = |name: &str, data_type: XdbcDataType, size: i32| XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size: Some(size),
        literal_prefix: None,
        literal_suffix: None,
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: false,
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: Some(10),
        interval_precision: None,
    };
    let quoted = |name: &str,
                  data_type: XdbcDataType,
                  size: i32,
                  prefix: &str,
                  subcode: Option<XdbcDatetimeSubcode>| XdbcTypeInfo {
        literal_prefix: Some(prefix.into()),
        literal_suffix: Some("'".into()),
        case_sensitive: data_type == XdbcDataType::XdbcVarchar,
        unsigned_attribute: None,
        auto_increment: None,
        num_prec_radix: None,
        datetime_subcode: subcode,
        ..numeric(name, data_type, size)
    };
    // Sorted by data type, as JDBC's getTypeInfo expects.
    b.append(quoted(
        "BINARY",
        XdbcDataType::XdbcBinary,
        i32::MAX,
        "X'",
        None,
    ));
    b.append(numeric("BIGINT", XdbcDataType::XdbcBigint, 19));
    b.append(numeric("TINYINT", XdbcDataType::XdbcTinyint, 3));
    b.append(XdbcTypeInfo {
        num_prec_radix: None,
        unsigned_attribute: None,
        ..numeric("BOOLEAN", XdbcDataType::XdbcBit, 1)
    });
    b.append(numeric("DECIMAL", XdbcDataType::XdbcDecimal, 38));
    b.append(numeric("INTEGER", XdbcDataType::XdbcInteger, 10));
    b.append(numeric("SMALLINT", XdbcDataType::XdbcSmallint, 5));
    b.append(numeric("FLOAT", XdbcDataType::XdbcFloat, 7));
    b.append(numeric("DOUBLE", XdbcDataType::XdbcDouble, 15));
    b.append(quoted(
        "VARCHAR",
        XdbcDataType::XdbcVarchar,
        i32::MAX,
        "'",
        None,
    ));
    b.append(quoted(
        "DATE",
        XdbcDataType::XdbcDate,
        10,
        "DATE '",
        // SQL_CODE_DATE = 1 (prost names the aliased value after YEAR).
        Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
    ));
    b.append(quoted(
        "TIMESTAMP",
        XdbcDataType::XdbcTimestamp,
        26,
        "TIMESTAMP '",
        Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
    ));
    b.build()
        .unwrap_or_else(|e| panic!("static XdbcTypeInfo table: {e}"))
});

/// `data_type` as sent to clients: dictionaries as their values, and the view types
/// (`Utf8View`, `BinaryView`) that older Arrow clients (JDBC) cannot read as plain
/// strings and bytes, inside lists and structs too.
pub fn plain_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Dictionary(_, values) => plain_type(values),
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::ListView(f) | DataType::List(f) => DataType::List(plain_field(f)),
        DataType::LargeListView(f) | DataType::LargeList(f) => DataType::LargeList(plain_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(plain_field(f), *n),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(plain_field).collect::<Fields>())
        }
        DataType::Map(f, sorted) => DataType::Map(plain_field(f), *sorted),
        other => other.clone(),
    }
}

fn plain_field(field: &FieldRef) -> FieldRef {
    Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(plain_type(field.data_type())),
    )
}

/// `schema` with every field in its [`plain_type`].
pub fn plain_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema.fields().iter().map(plain_field).collect::<Fields>(),
        schema.metadata().clone(),
    ))
}

/// `batch` cast to `schema` (its [`plain_schema`]); a no-op when nothing differs.
pub fn plain_batch(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// The `(catalog, schema)` pairs of a session.
pub fn schemas(ctx: &SessionContext) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for catalog_name in ctx.catalog_names() {
        if let Some(catalog) = ctx.catalog(&catalog_name) {
            for schema_name in catalog.schema_names() {
                out.push((catalog_name.clone(), schema_name));
            }
        }
    }
    out
}

/// The JDBC name of a DataFusion table type.
pub fn table_type_name(table_type: TableType) -> &'static str {
    match table_type {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

/// Appends every table of the session (with its plain schema) to `builder`, which
/// keeps those matching the client's filters.
pub async fn append_tables(
    ctx: &SessionContext,
    builder: &mut GetTablesBuilder,
) -> Result<(), arrow_flight::error::FlightError> {
    for (catalog_name, schema_name) in schemas(ctx) {
        let Some(schema) = ctx
            .catalog(&catalog_name)
            .and_then(|c| c.schema(&schema_name))
        else {
            continue;
        };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            let Ok(Some(table)) = schema.table(&name).await else {
                continue;
            };
            builder.append(
                &catalog_name,
                &schema_name,
                &name,
                table_type_name(table.table_type()),
                &plain_schema(&table.schema()),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, StringViewArray};
    use arrow::datatypes::{Field, Int16Type};

    #[test]
    fn results_are_sent_plain() {
        let dict: DictionaryArray<Int16Type> = vec!["a", "b", "a"].into_iter().collect();
        let view = StringViewArray::from(vec!["x", "y", "z"]);
        let batch = RecordBatch::try_from_iter([
            ("d", Arc::new(dict) as ArrayRef),
            ("v", Arc::new(view) as ArrayRef),
        ])
        .unwrap();
        let schema = plain_schema(&batch.schema());
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        let plain = plain_batch(batch, &schema).unwrap();
        assert_eq!(plain.schema(), schema);
        let nested = DataType::List(Arc::new(Field::new("item", DataType::Utf8View, true)));
        assert_eq!(
            plain_type(&nested),
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
        assert!(SQL_INFO.record_batch([SqlInfo::SqlKeywords as u32]).is_ok());
        assert!(XDBC_TYPES.record_batch(None).unwrap().num_rows() >= 10);
    }
}
