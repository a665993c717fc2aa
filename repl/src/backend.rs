//! Where the REPL's statements run: a lake folder opened in-process (the same session,
//! guard and pruning as the server) or a remote server over Flight SQL.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use hourlake_sql::{LiveLake, SessionFactory};
use tonic::transport::{Channel, Endpoint};

use hourlake_query::{Parameters, QueryExecutor, ServerConfig};

use crate::ReplError;

/// A result on its way: the schema now, the rows as they come.
pub struct Rows {
    /// The result schema.
    pub schema: SchemaRef,
    /// The rows; dropping the stream cancels the query.
    pub stream: BoxStream<'static, Result<RecordBatch, ReplError>>,
}

/// A lake folder or a Flight SQL server.
pub enum Backend {
    /// The lake, read in this process (through the server's executor, without its
    /// timeout: an analyst cancels with Ctrl-C).
    Lake(Arc<QueryExecutor>),
    /// A server, over Flight SQL.
    Flight(Box<FlightSqlServiceClient<Channel>>),
}

impl Backend {
    /// Reads the lake of `factory` in this process.
    pub fn lake(factory: SessionFactory) -> Result<Backend, ReplError> {
        let live = Arc::new(LiveLake::new(factory, hourlake_sql::DEFAULT_MAX_STALENESS));
        let config = ServerConfig {
            max_concurrent_queries: 4,
            query_timeout: Duration::from_secs(365 * 86_400),
            ..ServerConfig::default()
        };
        let executor = QueryExecutor::new(live, &config)
            .map_err(|e| ReplError::Connect(format!("starting the query runtime: {e}")))?;
        Ok(Backend::Lake(Arc::new(executor)))
    }

    /// Connects to a Flight SQL server at `url` (`grpc://host:port` or `http://...`),
    /// authenticating with a bearer `token` or Basic `user`/`password` when given.
    pub async fn connect(
        url: &str,
        token: Option<String>,
        basic: Option<(String, String)>,
    ) -> Result<Backend, ReplError> {
        let http = match url.strip_prefix("grpc://") {
            Some(rest) => format!("http://{rest}"),
            None if url.starts_with("grpc+tcp://") => url.replacen("grpc+tcp://", "http://", 1),
            None => url.to_string(),
        };
        let channel = Endpoint::from_shared(http)
            .map_err(|e| ReplError::Connect(format!("{url}: {e}")))?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| ReplError::Connect(format!("{url}: {e}")))?;
        let mut client = FlightSqlServiceClient::new(channel);
        if let Some(token) = token {
            client.set_token(token);
        }
        if let Some((user, password)) = basic {
            client
                .handshake(&user, &password)
                .await
                .map_err(|e| ReplError::Connect(format!("{url}: {e}")))?;
        }
        Ok(Backend::Flight(Box::new(client)))
    }

    /// Starts `sql`.
    pub async fn query(&mut self, sql: &str) -> Result<Rows, ReplError> {
        match self {
            Backend::Lake(executor) => {
                let admission = executor.admit(None)?;
                let planned = executor.plan(&admission, sql, Parameters::None).await?;
                let rows = executor.execute(admission, planned).await?;
                Ok(Rows {
                    schema: rows.schema.clone(),
                    stream: rows.into_stream().map_err(ReplError::Query).boxed(),
                })
            }
            Backend::Flight(client) => {
                let info = client.execute(sql.to_string(), None).await?;
                let schema = Arc::new(info.clone().try_decode_schema()?);
                let client = client.as_ref().clone();
                let tickets: Vec<_> = info.endpoint.into_iter().filter_map(|e| e.ticket).collect();
                let stream = futures::stream::iter(tickets)
                    .then(move |ticket| {
                        let mut client = client.clone();
                        async move { client.do_get(ticket).await }
                    })
                    .map_ok(|batches| batches.map_err(ReplError::from))
                    .map_err(ReplError::from)
                    .try_flatten()
                    .boxed();
                Ok(Rows { schema, stream })
            }
        }
    }

    /// Runs `sql` to the end.
    pub async fn collect(&mut self, sql: &str) -> Result<Vec<RecordBatch>, ReplError> {
        self.query(sql).await?.stream.try_collect().await
    }
}
