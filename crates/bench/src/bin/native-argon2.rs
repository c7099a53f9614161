//! Times argon2id with Latch's parameters (m=19456 KiB, t=2, p=1) natively:
//! the baseline for the same hashing inside a component.
//! Usage: `native-argon2 [iterations]`; prints the mean and median in ms.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args().nth(1).map_or(Ok(40), |n| n.parse())?;
    let password = latch_domain::Password::parse("correct horse battery")?;
    let mut samples = Vec::with_capacity(iterations);
    // One warm-up: the first allocation of the 19 MiB block costs page faults.
    latch_domain::hash_password(&password, [7; 16])?;
    for i in 0..iterations {
        let started = Instant::now();
        latch_domain::hash_password(&password, [i as u8; 16])?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let median = samples[samples.len() / 2];
    println!("argon2id native: {iterations} hashes, mean {mean:.2} ms, median {median:.2} ms");
    Ok(())
}
