//! The README's observability picture: what the Grafana dashboard's
//! "packets by reason" panel shows, drawn from a real Prometheus's query
//! API (no Grafana here).
//!
//! ```text
//! cargo run -p netfabric-tests --example observability_plot -- \
//!     127.0.0.1:9090 <seconds back> docs/observability.png
//! ```
//!
//! Plots `sum by (verdict, reason) (rate(netfabric_packets_total[5s]))`
//! over the last `<seconds back>` seconds, one line per series that was
//! ever non-zero.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use netfabric_tests::bench::plot::{Chart, Series, draw};
use serde_json::Value;

fn http_get(addr: &str, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    if !head.contains(" 200 ") {
        bail!("{path}: {head}");
    }
    Ok(body.to_owned())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, back, out] = args.as_slice() else {
        bail!("usage: observability_plot <prometheus addr> <seconds back> <out.png>");
    };
    let back: f64 = back.parse().context("<seconds back>")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    let start = now - back;
    let query = "sum by (verdict, reason) (rate(netfabric_packets_total[5s]))";
    let path = format!(
        "/api/v1/query_range?query={}&start={start:.3}&end={now:.3}&step=1",
        urlencode(query)
    );
    let v: Value = serde_json::from_str(&http_get(addr, &path)?)?;
    let mut series: BTreeMap<String, Vec<(f64, f64, f64, f64)>> = BTreeMap::new();
    for r in v["data"]["result"].as_array().context("no result")? {
        let name = format!(
            "{} {}",
            r["metric"]["verdict"].as_str().unwrap_or("?"),
            r["metric"]["reason"].as_str().unwrap_or("?")
        );
        let points: Vec<(f64, f64, f64, f64)> = r["values"]
            .as_array()
            .context("values")?
            .iter()
            .filter_map(|p| {
                let t = p[0].as_f64()? - start;
                let y: f64 = p[1].as_str()?.parse().ok()?;
                Some((t, y, y, y))
            })
            .collect();
        if points.iter().any(|p| p.1 > 0.0) {
            series.insert(name, points);
        }
    }
    if series.is_empty() {
        bail!("no traffic in the last {back} s");
    }
    let chart = Chart {
        title: "netfabric: packets by verdict and reason (rate over 5 s, all hosts)",
        x_desc: "seconds",
        y_desc: "packets / s",
        log_x: false,
        series: series
            .into_iter()
            .map(|(name, points)| Series {
                name,
                points,
                baseline: false,
            })
            .collect(),
    };
    draw(Path::new(out), &[chart])?;
    println!("wrote {out}");
    Ok(())
}
