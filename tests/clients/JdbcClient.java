// The Arrow Flight SQL JDBC driver (what DBeaver, Tableau and many BI tools use)
// against `hourlake serve --flight`. Prints what it saw as `key=value` lines; the Rust
// e2e test (tests/e2e/flight.rs) compares them with the lake.
//
//   java -cp flight-sql-jdbc-driver.jar JdbcClient.java JDBC_URL USER_ID [USER PASSWORD]
import java.sql.*;
import java.util.*;

public class JdbcClient {
    static void out(String key, Object value) {
        System.out.println(key + "=" + value);
    }

    public static void main(String[] args) throws Exception {
        String url = args[0];
        String userId = args[1];
        Properties props = new Properties();
        if (args.length > 3) {
            props.setProperty("user", args[2]);
            props.setProperty("password", args[3]);
        }
        try (Connection c = DriverManager.getConnection(url, props)) {
            DatabaseMetaData md = c.getMetaData();
            out("product", md.getDatabaseProductName());
            out("read_only", md.isReadOnly());
            out("keywords_present", !md.getSQLKeywords().isEmpty());
            out("quote", md.getIdentifierQuoteString());

            List<String> catalogs = new ArrayList<>();
            try (ResultSet rs = md.getCatalogs()) {
                while (rs.next()) catalogs.add(rs.getString("TABLE_CAT"));
            }
            out("catalogs", String.join(",", catalogs));

            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) schemas.add(rs.getString("TABLE_CATALOG") + "." + rs.getString("TABLE_SCHEM"));
            }
            out("schemas", String.join(",", schemas));

            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "public", "%", null)) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE"));
            }
            Collections.sort(tables);
            out("tables", String.join(",", tables));

            List<String> types = new ArrayList<>();
            try (ResultSet rs = md.getTableTypes()) {
                while (rs.next()) types.add(rs.getString("TABLE_TYPE"));
            }
            out("table_types", String.join(",", types));

            List<String> columns = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "engagement_events", "%")) {
                while (rs.next()) columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
            }
            out("columns", String.join(",", columns));

            int keys = 0;
            try (ResultSet rs = md.getPrimaryKeys(null, "public", "engagement_events")) {
                while (rs.next()) keys++;
            }
            out("primary_keys", keys);


            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT count(*) AS n FROM engagement_events")) {
                rs.next();
                out("count", rs.getLong("n"));
            }
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery(
                     "SELECT event_type, count(*) AS n FROM engagement_events GROUP BY event_type ORDER BY event_type")) {
                List<String> rows = new ArrayList<>();
                while (rs.next()) rows.add(rs.getString(1) + ":" + rs.getLong(2));
                out("by_type", String.join(",", rows));
            }
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery(
                     "SELECT event_date, event_hour, event_time FROM engagement_events ORDER BY event_time LIMIT 1")) {
                rs.next();
                ResultSetMetaData rsm = rs.getMetaData();
                out("first_event_date", rs.getDate(1) + ":" + rsm.getColumnTypeName(1));
                out("first_event_hour", rs.getInt(2));
                out("first_event_time_present", rs.getTimestamp(3) != null);
            }
            try (PreparedStatement ps = c.prepareStatement(
                     "SELECT count(*) AS n FROM engagement_events WHERE user_id = ?")) {
                ps.setString(1, userId);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    out("user_count", rs.getLong(1));
                }
                ps.setString(1, "no-such-user");
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    out("nobody_count", rs.getLong(1));
                }
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT event_id, user_id FROM engagement_events WHERE 1 = 0");
                 ResultSet rs = ps.executeQuery()) {
                out("empty_prepared_columns", rs.getMetaData().getColumnCount());
                out("empty_prepared_has_row", rs.next());
            }
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT event_id, user_id FROM engagement_events WHERE 1 = 0")) {
                ResultSetMetaData rsm = rs.getMetaData();
                List<String> names = new ArrayList<>();
                for (int i = 1; i <= rsm.getColumnCount(); i++) names.add(rsm.getColumnName(i));
                out("empty_columns", String.join(",", names));
                out("empty_has_row", rs.next());
            }
            try (Statement s = c.createStatement()) {
                s.executeQuery("DROP TABLE engagement_events");
                out("write", "accepted");
            } catch (SQLException e) {
                out("write", "refused");
                out("write_message_mentions_read_only", e.getMessage().contains("read"));
            }
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELEC 1");
                out("bad_sql", "accepted");
            } catch (SQLException e) {
                out("bad_sql", "refused");
            }
        }
        out("done", true);
    }
}
