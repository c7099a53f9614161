//! Passwords: acceptance rules and argon2id hashing.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`)
//! using the OWASP-recommended argon2id parameters. Salts are passed in so
//! this module stays free of OS randomness. The `argon2` crate reads and
//! writes the PHC strings; the hash itself is computed by
//! [`argon2_lanes`], which runs on WebAssembly SIMD inside a component.

use std::fmt;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Params, Version};

mod argon2_lanes;

use crate::error::{DomainError, FieldError, codes};

const FIELD: &str = "password";
/// Fewest characters (Unicode scalar values) a password may have.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Most characters (Unicode scalar values) a password may have.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// argon2id memory cost in KiB (OWASP: 19 MiB).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
/// argon2id iterations (OWASP: 2).
pub const ARGON2_ITERATIONS: u32 = 2;
/// argon2id lanes (OWASP: 1).
pub const ARGON2_PARALLELISM: u32 = 1;
/// Length of the derived hash in bytes.
pub const ARGON2_OUTPUT_LEN: usize = 32;
/// Length of the salt in bytes.
pub const SALT_LEN: usize = 16;

// Ceilings on parameters read back from a stored hash, so a corrupted or
// planted row cannot make a single sign-in allocate gigabytes.
const MAX_STORED_MEMORY_KIB: u32 = 262_144;
const MAX_STORED_ITERATIONS: u32 = 16;
const MAX_STORED_PARALLELISM: u32 = 8;

/// The current hashing parameters. Evaluated at compile time, so invalid
/// values fail the build instead of a request.
const PARAMS: Params = match Params::new(
    ARGON2_MEMORY_KIB,
    ARGON2_ITERATIONS,
    ARGON2_PARALLELISM,
    Some(ARGON2_OUTPUT_LEN),
) {
    Ok(params) => params,
    Err(_) => panic!("invalid argon2 parameters"),
};

/// A PHC string with exactly the current parameters, for a password that is
/// not used anywhere. Verify against it when the email is unknown so that
/// sign-in costs the same time whether or not the account exists; the result
/// must be discarded (see [`verify_password_or_dummy`]).
pub const DUMMY_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bGF0Y2gtZHVtbXktc2FsdA$TClKOp3qhbfKUB61+xaE0ETXXVLNCt4NgvuiaolRoyo";

/// Common leaked passwords, lower-case, sorted, one per line (see the test
/// `common_password_list_is_sorted_unique_lower_case_and_long_enough`).
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

/// A password accepted for a new account or a password change.
///
/// Its `Debug` output is redacted; use [`Password::expose`] only to hash it.
// No `PartialEq`: passwords are only ever compared through their hash.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Checks a new password: 8 to 128 characters (Unicode scalar values,
    /// not bytes) and not in the shipped list of common passwords (compared
    /// case-insensitively). The value is kept as typed: no trimming.
    ///
    /// # Errors
    /// A [`FieldError`] on field `password` (`required`, `too_short`,
    /// `too_long` or `common_password`). The message never contains the value.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err(FieldError::new(
                FIELD,
                codes::REQUIRED,
                "password is required",
            ));
        }
        if chars < MIN_PASSWORD_CHARS {
            return Err(FieldError::new(
                FIELD,
                codes::TOO_SHORT,
                format!("password must be at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(FieldError::new(
                FIELD,
                codes::TOO_LONG,
                format!("password must be at most {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        if is_common_password(raw) {
            return Err(FieldError::new(
                FIELD,
                codes::COMMON_PASSWORD,
                "this password is too common; choose another",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password itself, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Whether `candidate` (compared case-insensitively) is in the shipped list
/// of common passwords. Binary search over the embedded sorted text: no
/// table is built, so the check costs O(log n) line comparisons.
pub fn is_common_password(candidate: &str) -> bool {
    let lowered = candidate.to_lowercase();
    sorted_lines_contain(COMMON_PASSWORDS, &lowered)
}

/// Binary search for a whole line equal to `needle` in newline-separated,
/// byte-wise sorted `text`. Invariant: `lo` is always at a line start.
fn sorted_lines_contain(text: &str, needle: &str) -> bool {
    let bytes = text.as_bytes();
    let (mut lo, mut hi) = (0usize, bytes.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let start = bytes[lo..mid]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(lo, |i| lo + i + 1);
        let end = bytes[start..hi]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(hi, |i| start + i);
        match bytes[start..end].cmp(needle.as_bytes()) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => lo = end + 1,
            std::cmp::Ordering::Greater => hi = start,
        }
    }
    false
}

/// Hashes a password with argon2id (m=19456 KiB, t=2, p=1) and the given
/// 16 random bytes as salt, returning a PHC string.
///
/// # Errors
/// [`DomainError::PasswordHashing`] if argon2 rejects the input (not
/// expected with the fixed parameters and salt length).
pub fn hash_password(password: &Password, salt: [u8; SALT_LEN]) -> Result<String, DomainError> {
    hash_raw(password.expose().as_bytes(), &salt)
}

fn hash_raw(password: &[u8], salt: &[u8]) -> Result<String, DomainError> {
    let salt_string = SaltString::encode_b64(salt).map_err(|_| DomainError::PasswordHashing)?;
    let output = compute(Algorithm::Argon2id, Version::V0x13, &PARAMS, password, salt)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&PARAMS).map_err(|_| DomainError::PasswordHashing)?,
        salt: Some(salt_string.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// The Argon2 tag of `password` and the raw `salt` with these parameters
/// (tag length and associated data included).
fn compute(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: &[u8],
) -> Result<Output, DomainError> {
    let inputs = argon2_lanes::Inputs {
        algorithm,
        version,
        memory_kib: params.m_cost(),
        passes: params.t_cost(),
        lanes: params.p_cost(),
        password,
        salt,
        secret: &[],
        associated_data: params.data(),
    };
    let tag_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    Output::init_with(tag_len, |out| {
        argon2_lanes::hash_into(&inputs, out).map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|_| DomainError::PasswordHashing)
}

/// Whether `candidate` matches the PHC string `phc`.
///
/// The whole candidate is hashed (argon2 does not truncate), and the
/// comparison is constant-time. Returns `false` for malformed hashes, for
/// hashes whose parameters exceed sane ceilings and for candidates longer
/// than any acceptable password could be.
pub fn verify_password(candidate: &str, phc: &str) -> bool {
    // A valid password is at most 128 scalar values of at most 4 bytes.
    if candidate.len() > MAX_PASSWORD_CHARS * 4 {
        return false;
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_STORED_MEMORY_KIB
        || params.t_cost() > MAX_STORED_ITERATIONS
        || params.p_cost() > MAX_STORED_PARALLELISM
    {
        return false;
    }
    // Hashed with the algorithm, version and parameters stored in `phc`, so
    // older hashes keep verifying until they are rehashed. A PHC string
    // without a version is 0x13, as the argon2 crate reads it.
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let mut salt_buffer = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buffer) else {
        return false;
    };
    // `Output`'s equality is constant-time.
    compute(algorithm, version, &params, candidate.as_bytes(), salt)
        .is_ok_and(|computed| computed == expected)
}

/// Verifies `candidate` against the account's hash, or against
/// [`DUMMY_PASSWORD_HASH`] when there is no account, so both paths cost the
/// same argon2 work. Always `false` without an account.
pub fn verify_password_or_dummy(candidate: &str, phc: Option<&str>) -> bool {
    match phc {
        Some(phc) => verify_password(candidate, phc),
        None => {
            // Same work, result deliberately ignored.
            let _ = verify_password(candidate, DUMMY_PASSWORD_HASH);
            false
        }
    }
}

/// Whether a stored hash should be replaced by a fresh one (after a
/// successful sign-in) because it is not argon2id v19 with exactly the
/// current parameters. Unparseable hashes also need rehashing.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return true;
    };
    if hash.algorithm != Algorithm::Argon2id.ident() || hash.version != Some(Version::V0x13.into())
    {
        return true;
    }
    let output_len = hash.hash.map(|output| output.len());
    let salt_len = hash.salt.map(|salt| salt.len());
    match Params::try_from(&hash) {
        Ok(params) => {
            params.m_cost() != ARGON2_MEMORY_KIB
                || params.t_cost() != ARGON2_ITERATIONS
                || params.p_cost() != ARGON2_PARALLELISM
                || output_len != Some(ARGON2_OUTPUT_LEN)
                // 16 bytes of salt encode to 22 base64 characters.
                || salt_len != Some(crate::encoding::encoded_len(SALT_LEN))
        }
        Err(_) => true,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Input of [`DUMMY_PASSWORD_HASH`]: longer than any valid password.
    fn dummy_source() -> String {
        "latch-dummy-password-".repeat(7)
    }
    const DUMMY_SALT: &[u8; 16] = b"latch-dummy-salt";

    #[test]
    fn length_bounds_count_characters_not_bytes() {
        let err = Password::parse("Zx9#kQ2").unwrap_err();
        assert_eq!((err.field, err.code), ("password", codes::TOO_SHORT));
        assert!(Password::parse("Zx9#kQ2m").is_ok());

        let max = "Zx9#kQ2m".repeat(16);
        assert_eq!(max.chars().count(), 128);
        assert!(Password::parse(&max).is_ok());
        let too_long = format!("{max}a");
        assert_eq!(
            Password::parse(&too_long).unwrap_err().code,
            codes::TOO_LONG
        );

        // 7 two-byte characters are 14 bytes but still too short...
        assert_eq!(
            Password::parse("ééééééé").unwrap_err().code,
            codes::TOO_SHORT
        );
        // ...and 8 of them are enough.
        assert!(Password::parse("éééééééé").is_ok());
        // 128 four-byte characters (512 bytes) are accepted, 129 are not.
        let emoji = "\u{1F512}".repeat(128);
        assert!(Password::parse(&emoji).is_ok());
        assert_eq!(
            Password::parse(&format!("{emoji}\u{1F512}"))
                .unwrap_err()
                .code,
            codes::TOO_LONG
        );
        assert_eq!(Password::parse("").unwrap_err().code, codes::REQUIRED);
    }

    #[test]
    fn common_passwords_are_rejected_case_insensitively() {
        for common in [
            "password",
            "12345678",
            "123456789",
            "qwertyuiop",
            "iloveyou",
            "Password1",
            "PASSWORD",
            "11111111",
            "sunshine1",
            "letmein1",
            "1q2w3e4r",
            "zzzzzzzz",
            "!@#$%^&*",
        ] {
            let err = Password::parse(common).expect_err(common);
            assert_eq!(err.code, codes::COMMON_PASSWORD, "{common}");
            // A fixed message: the value is never echoed.
            assert_eq!(err.message, "this password is too common; choose another");
        }
        assert!(Password::parse("correct horse battery staple").is_ok());
        assert!(Password::parse("password-but-longer-7").is_ok());
    }

    #[test]
    fn common_password_list_is_sorted_unique_lower_case_and_long_enough() {
        assert!(COMMON_PASSWORDS.ends_with('\n'));
        let lines: Vec<&str> = COMMON_PASSWORDS.lines().collect();
        assert!(lines.len() >= 500, "{}", lines.len());
        for pair in lines.windows(2) {
            assert!(pair[0] < pair[1], "not sorted or duplicate: {pair:?}");
        }
        for line in &lines {
            assert!(line.chars().count() >= MIN_PASSWORD_CHARS, "{line}");
            assert_eq!(*line, line.to_lowercase(), "{line}");
            assert_eq!(*line, line.trim(), "{line:?}");
            assert!(!line.contains('\r'));
        }
        // Every line is found by the search, and near misses are not.
        for line in &lines {
            assert!(sorted_lines_contain(COMMON_PASSWORDS, line), "{line}");
            assert!(!sorted_lines_contain(
                COMMON_PASSWORDS,
                &format!("{line}\u{7f}")
            ));
        }
        assert!(!sorted_lines_contain(COMMON_PASSWORDS, ""));
        assert!(!sorted_lines_contain(COMMON_PASSWORDS, " "));
        assert!(!sorted_lines_contain(COMMON_PASSWORDS, "~~~~~~~~~"));
    }

    #[test]
    fn sorted_line_search_handles_edges() {
        let text = "b\nd\nf";
        for (needle, found) in [
            ("a", false),
            ("b", true),
            ("c", false),
            ("d", true),
            ("f", true),
            ("g", false),
            ("b\nd", false),
        ] {
            assert_eq!(sorted_lines_contain(text, needle), found, "{needle:?}");
        }
        assert!(!sorted_lines_contain("", "a"));
    }

    #[test]
    fn password_debug_is_redacted() {
        let password = Password::parse("s3cret-Value-42").unwrap();
        assert_eq!(format!("{password:?}"), "Password(<redacted>)");
    }

    #[test]
    fn hash_has_exact_owasp_parameters_and_verifies_without_truncation() {
        let base = "Zx9#kQ2m".repeat(16);
        let password = Password::parse(&base).unwrap();
        let phc = hash_password(&password, [42; 16]).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let parsed = PasswordHash::new(&phc).unwrap();
        assert_eq!(parsed.hash.unwrap().len(), 32);
        assert!(!needs_rehash(&phc));

        assert!(verify_password(&base, &phc));
        // Same 127 first characters, different last one.
        let mut last_differs = base.clone();
        last_differs.pop();
        last_differs.push('n');
        assert!(!verify_password(&last_differs, &phc));
        assert!(!verify_password(&base[..127], &phc));
        assert!(!verify_password(&format!("{base}x"), &phc));
        assert!(!verify_password(&base, "not a phc string"));
        assert!(!verify_password(&base, ""));
    }

    #[test]
    fn dummy_hash_is_genuine_and_costs_the_same_work() {
        let dummy = PasswordHash::new(DUMMY_PASSWORD_HASH).unwrap();
        let real = hash_raw(b"any password at all", &[1; 16]).unwrap();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(
            Params::try_from(&dummy).unwrap(),
            Params::try_from(&real).unwrap()
        );
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.salt.unwrap().len(), real.salt.unwrap().len());
        assert_eq!(dummy.hash.unwrap().len(), real.hash.unwrap().len());
        assert!(!needs_rehash(DUMMY_PASSWORD_HASH));
        // It is a real hash of a known value, not random bytes that merely
        // parse, so verifying it runs the full argon2 computation.
        assert_eq!(
            hash_raw(dummy_source().as_bytes(), DUMMY_SALT).unwrap(),
            DUMMY_PASSWORD_HASH
        );
        assert!(dummy_source().chars().count() > MAX_PASSWORD_CHARS);
        assert!(!verify_password_or_dummy("anything", None));
    }

    #[test]
    fn needs_rehash_flags_other_parameters_and_algorithms() {
        let cheaper = "$argon2id$v=19$m=4096,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$W1n0x5XvdTqGlF3dbBcCTnmaVmxQ7ByAAKl3cGYHeyQ";
        assert!(needs_rehash(cheaper));
        let argon2i = "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$W1n0x5XvdTqGlF3dbBcCTnmaVmxQ7ByAAKl3cGYHeyQ";
        assert!(needs_rehash(argon2i));
        let old_version = "$argon2id$v=16$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$W1n0x5XvdTqGlF3dbBcCTnmaVmxQ7ByAAKl3cGYHeyQ";
        assert!(needs_rehash(old_version));
        assert!(needs_rehash("garbage"));
        assert!(needs_rehash(""));
    }

    #[test]
    fn verify_refuses_absurd_stored_parameters_without_hashing() {
        // Would need 4 GiB of memory if it were attempted.
        let huge = "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$W1n0x5XvdTqGlF3dbBcCTnmaVmxQ7ByAAKl3cGYHeyQ";
        assert!(!verify_password("whatever123", huge));
    }
}
