//! The token file: one bearer token per line, readable by its owner only. Only the tokens'
//! blake3 hashes are kept in memory, and a presented token is compared against every one of
//! them in constant time.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Shortest accepted token, in bytes: shorter ones can be guessed.
pub const MIN_TOKEN_LEN: usize = 32;

/// Largest token file read: far more tokens than anyone rotates through, and a bound on what a
/// mistaken path (a log, a device) can make the daemon read.
const MAX_FILE_SIZE: u64 = 1 << 20;

/// Why a token file cannot be used. No variant holds a token, so none can leak into a log.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be opened or read.
    #[error("cannot read the token file {}: {source}", path.display())]
    Read {
        /// The token file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Users other than the owner may read or change the file.
    #[error(
        "the token file {} has mode {mode:04o}: users other than its owner can read or change \
         it; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The token file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a regular file, or is implausibly large.
    #[error(
        "the token file {} is not a regular file of at most 1MiB (one token per line)",
        path.display()
    )]
    NotATokenFile {
        /// The token file.
        path: PathBuf,
    },
    /// The file has no token line.
    #[error(
        "the token file {} holds no token: write one per line (blank lines and lines starting \
         with `#` are ignored), e.g. the output of `openssl rand -hex 32`",
        path.display()
    )]
    Empty {
        /// The token file.
        path: PathBuf,
    },
    /// A token is too short to be secret.
    #[error(
        "line {line} of the token file {} holds a token of {len} bytes; a token needs at least \
         {MIN_TOKEN_LEN}, or it can be guessed (`openssl rand -hex 32` makes one of 64)",
        path.display()
    )]
    TooShort {
        /// The token file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The token's length in bytes.
        len: usize,
    },
    /// A token holds a character an HTTP header cannot carry.
    #[error(
        "line {line} of the token file {}: a token may hold only printable ASCII without spaces \
         (it travels in an HTTP header)",
        path.display()
    )]
    BadCharacter {
        /// The token file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// The accepted tokens, as blake3 hashes.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSet {
    hashes: Vec<blake3::Hash>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSet({} tokens)", self.hashes.len())
    }
}

impl TokenSet {
    /// Reads a token file, refusing one that group or others may read or write, one without
    /// tokens, and one with a token shorter than [`MIN_TOKEN_LEN`].
    pub fn load(path: &Path) -> Result<TokenSet, TokenFileError> {
        let read_error = |source| TokenFileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        // The mode of the file opened, not of whatever the path names a moment later.
        let metadata = file.metadata().map_err(read_error)?;
        if !metadata.is_file() || metadata.len() > MAX_FILE_SIZE {
            return Err(TokenFileError::NotATokenFile {
                path: path.to_path_buf(),
            });
        }
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(TokenFileError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = String::new();
        file.take(MAX_FILE_SIZE)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        TokenSet::parse(&text, path)
    }

    /// Parses the text of a token file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<TokenSet, TokenFileError> {
        let mut hashes = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let token = line.trim();
            if token.is_empty() || token.starts_with('#') {
                continue;
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(TokenFileError::BadCharacter {
                    path: path.to_path_buf(),
                    line: index + 1,
                });
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(TokenFileError::TooShort {
                    path: path.to_path_buf(),
                    line: index + 1,
                    len: token.len(),
                });
            }
            hashes.push(blake3::hash(token.as_bytes()));
        }
        if hashes.is_empty() {
            return Err(TokenFileError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(TokenSet { hashes })
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Always false: a loaded set holds at least one token.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `presented` is one of the tokens. Hashing first gives equal-length values, whose
    /// `==` is constant time (`blake3::Hash`), and every token is compared without stopping at
    /// a match, so the time taken says neither which token matched nor how much of one did.
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = blake3::hash(presented.as_bytes());
        self.hashes
            .iter()
            .fold(false, |found, hash| found | (*hash == presented))
    }
}
