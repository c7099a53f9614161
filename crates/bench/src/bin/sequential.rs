//! Sequential requests on one kept-alive connection, as an ingress controller
//! sends them upstream: prints the latency distribution, so a Nagle stall
//! (about 40 ms) shows as a long tail that throughput figures hide.
//!
//! Usage: `sequential ADDR PATH COUNT [HEADER...]`, e.g.
//! `sequential 127.0.0.1:3000 /user/profile 200 'authorization: Bearer …'`.
//! Prints `n=… p50=…ms p90=…ms p99=…ms max=…ms over20ms=…`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use latch_e2e::KeptAlive;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, path, count, headers @ ..] = args.as_slice() else {
        bail!("usage: sequential ADDR PATH COUNT [HEADER...]");
    };
    let count: usize = count.parse().context("COUNT")?;
    if count == 0 {
        bail!("COUNT must be at least 1");
    }
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut connection = KeptAlive::connect(address);
    let mut times = Vec::with_capacity(count);
    // Two untimed requests warm the connection and the server up.
    for round in 0..count + 2 {
        let started = Instant::now();
        let reply = connection.get(path, &headers);
        if reply.status != 200 {
            bail!("{path} answered {}: {}", reply.status, reply.head);
        }
        if round >= 2 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at =
        |q: f64| ms(times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1]);
    println!(
        "n={count} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms over20ms={}",
        at(0.50),
        at(0.90),
        at(0.99),
        ms(times[times.len() - 1]),
        times
            .iter()
            .filter(|t| **t > Duration::from_millis(20))
            .count()
    );
    Ok(())
}
