//! Times argon2id with Latch's parameters (m=19456 KiB, t=2, p=1) natively:
//! the baseline for the same hashing inside a component. Two native figures,
//! interleaved hash by hash: the `argon2` crate (the baseline the component
//! is held to) and Latch's own lanes (crates/domain/src/password/argon2_lanes.rs,
//! here without WebAssembly SIMD).
//! Usage: `native-argon2 [iterations]`; prints the mean and median in ms.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args().nth(1).map_or(Ok(40), |n| n.parse())?;
    let password = latch_domain::Password::parse("correct horse battery")?;
    let params = argon2::Params::new(
        latch_domain::password::ARGON2_MEMORY_KIB,
        latch_domain::password::ARGON2_ITERATIONS,
        latch_domain::password::ARGON2_PARALLELISM,
        Some(latch_domain::password::ARGON2_OUTPUT_LEN),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let crate_hasher =
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut tag = [0u8; 32];
    // One warm-up each: the first allocation of the 19 MiB block costs page faults.
    latch_domain::hash_password(&password, [7; 16])?;
    crate_hasher
        .hash_password_into(password.expose().as_bytes(), &[7; 16], &mut tag)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut crate_ms, mut latch_ms) = (Vec::new(), Vec::new());
    for i in 0..iterations {
        let started = Instant::now();
        crate_hasher
            .hash_password_into(password.expose().as_bytes(), &[i as u8; 16], &mut tag)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        crate_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        latch_domain::hash_password(&password, [i as u8; 16])?;
        latch_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    for (name, samples) in [
        ("argon2 crate", &mut crate_ms),
        ("latch lanes", &mut latch_ms),
    ] {
        samples.sort_by(f64::total_cmp);
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let median = samples[samples.len() / 2];
        println!(
            "argon2id native, {name}: {iterations} hashes, mean {mean:.2} ms, median {median:.2} ms"
        );
    }
    Ok(())
}
