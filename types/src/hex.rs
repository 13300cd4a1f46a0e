//! The one hex rule for hashes and keys: exactly 64 digits, lower case only.
//!
//! Lower case only, not "either case": the wire contract says lower case, object names in the
//! store are lower case, and `engine.lock` entries are compared as text, so a second spelling
//! of the same hash would be a second identity everywhere text is compared. Refusing upper case
//! (with a message that says so) is cheaper than normalising it in every place that reads one.

use crate::digest::DigestProblem;

/// The 32 bytes as 64 lower-case hex digits.
pub(crate) fn encode(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Decodes exactly 64 lower-case hex digits.
pub(crate) fn decode(hex: &str) -> Result<[u8; 32], DigestProblem> {
    let length = hex.chars().count();
    if length != 64 {
        return Err(DigestProblem::WrongLength(length));
    }
    let nibble = |position: usize, c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Err(DigestProblem::UpperCase { position }),
        _ => Err(DigestProblem::NotHex {
            character: char::from(c),
            position,
        }),
    };
    // 64 characters and 64 bytes: every character is one byte (ASCII) from here on.
    if !hex.is_ascii() {
        let (position, character) = hex
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii())
            .unwrap_or((0, '?'));
        return Err(DigestProblem::NotHex {
            character,
            position,
        });
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
        out[i] = (nibble(2 * i, pair[0])? << 4) | nibble(2 * i + 1, pair[1])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte_value() {
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(37);
        }
        assert_eq!(decode(&encode(&bytes)), Ok(bytes));
        assert_eq!(encode(&[0xff; 32]), "f".repeat(64));
    }

    #[test]
    fn refuses_upper_case_wrong_lengths_and_non_hex() {
        let upper = format!("{}A{}", "0".repeat(5), "0".repeat(58));
        assert_eq!(
            decode(&upper),
            Err(DigestProblem::UpperCase { position: 5 })
        );
        assert_eq!(decode("abc"), Err(DigestProblem::WrongLength(3)));
        assert_eq!(
            decode(&format!("{}g", "0".repeat(63))),
            Err(DigestProblem::NotHex {
                character: 'g',
                position: 63
            })
        );
        // 64 characters, more bytes: the length counts characters, the error names the one.
        assert_eq!(
            decode(&format!("é{}", "0".repeat(63))),
            Err(DigestProblem::NotHex {
                character: 'é',
                position: 0
            })
        );
    }
}
