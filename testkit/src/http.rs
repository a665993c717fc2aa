//! Asking a process over HTTP without a client library: a plain GET, and reading
//! Prometheus metric text.

use std::io::{Read, Write};

/// A plain HTTP/1.0 GET; returns (status line, body).
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The sum of a metric's samples over all its label sets, in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
        .collect();
    assert!(!values.is_empty(), "metric {name} not found in:\n{text}");
    values.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_every_label_set_are_summed_and_prefixes_do_not_count() {
        let text =
            "# HELP x_total X\nx_total{table=\"a\"} 2\nx_total{table=\"b\"} 3\nx_total_more 100\n";
        assert_eq!(metric(text, "x_total"), 5.0);
    }
}
