//! Connecting to the farm's database: the URL, the usual `PG*` variables and a password file,
//! with the password kept out of every message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::Host;

/// How to reach the farm's database, resolved from `[queue]` and the environment.
#[derive(Clone)]
pub struct QueueDatabase {
    config: tokio_postgres::Config,
    /// `postgres://user@host:port/db`, for logs and errors (never the password).
    display: String,
    /// TLS as the URL's `sslmode` asks (`prefer` by default: TLS when the server offers it),
    /// certificates always verified: the platform's roots, plus `queue.ca_file`.
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl std::fmt::Debug for QueueDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl std::fmt::Display for QueueDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// What the environment can add to a URL: the libpq variables a PostgreSQL user already has.
#[derive(Debug, Default, Clone)]
pub struct PgEnvironment {
    /// `PGHOST`.
    pub host: Option<String>,
    /// `PGPORT`.
    pub port: Option<String>,
    /// `PGUSER`.
    pub user: Option<String>,
    /// `PGDATABASE`.
    pub database: Option<String>,
    /// `PGPASSWORD`.
    pub password: Option<String>,
    /// `PGPASSFILE`, else `~/.pgpass`.
    pub passfile: Option<PathBuf>,
}

impl PgEnvironment {
    /// The variables of this process.
    pub fn from_process() -> PgEnvironment {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        PgEnvironment {
            host: var("PGHOST"),
            port: var("PGPORT"),
            user: var("PGUSER"),
            database: var("PGDATABASE"),
            password: var("PGPASSWORD"),
            passfile: var("PGPASSFILE")
                .map(PathBuf::from)
                .or_else(|| dirs::home_dir().map(|home| home.join(".pgpass"))),
        }
    }
}

impl QueueDatabase {
    /// Resolves `url`: settings it lacks from `env`, the password from the URL, then
    /// `password_file`, then `PGPASSWORD`, then the passfile.
    pub fn resolve(
        url: &str,
        password_file: Option<&Path>,
        ca_file: Option<&Path>,
        env: &PgEnvironment,
    ) -> anyhow::Result<QueueDatabase> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            anyhow::anyhow!("queue.url is not a PostgreSQL connection URL ({e}); expected postgres://[user@]host[:port]/database")
        })?;
        if config.get_hosts().is_empty() {
            config.host(env.host.as_deref().unwrap_or("localhost"));
        }
        if config.get_ports().is_empty()
            && let Some(port) = &env.port
        {
            let port: u16 = port
                .parse()
                .map_err(|_| anyhow::anyhow!("PGPORT={port:?} is not a port number"))?;
            config.port(port);
        }
        if config.get_user().is_none() {
            let user = env.user.clone().unwrap_or_else(|| "trtfarm".into());
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let database = env
                .database
                .clone()
                .unwrap_or_else(|| config.get_user().unwrap_or("trtfarm").to_owned());
            config.dbname(&database);
        }
        if config.get_password().is_none() {
            let password = match password_file {
                Some(path) => Some(read_password_file(path)?),
                None => env.password.clone().or_else(|| {
                    let passfile = env.passfile.as_deref()?;
                    passfile_password(passfile, &config)
                }),
            };
            if let Some(password) = password {
                config.password(password);
            }
        }
        config.application_name("trtfarmd");
        config.connect_timeout(Duration::from_secs(5));
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        let display = describe(&config);
        Ok(QueueDatabase {
            config,
            display,
            tls: tls(ca_file)?,
        })
    }

    /// The driver's connection settings.
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS connector for every connection to the database.
    pub(crate) fn tls(&self) -> tokio_postgres_rustls::MakeRustlsConnect {
        self.tls.clone()
    }
}

/// A rustls client trusting the platform's roots and the certificates in `ca_file`.
fn tls(ca_file: Option<&Path>) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    // Certificates the platform store holds but rustls cannot parse are skipped, as browsers do.
    let native = rustls_native_certs::load_native_certs();
    let _ = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| anyhow::anyhow!("cannot read queue.ca_file {}: {e}", path.display()))?;
        if certificates.is_empty() {
            anyhow::bail!("queue.ca_file {} holds no PEM certificate", path.display());
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| anyhow::anyhow!("queue.ca_file {}: {e}", path.display()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS set-up for the farm's database: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl QueueDatabase {}

/// `postgres://user@host:port/db`, without the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// The first line of `path`.
fn read_password_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read queue.password_file {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim_end();
    if line.is_empty() {
        anyhow::bail!(
            "queue.password_file {} is empty; its first line must be the password",
            path.display()
        );
    }
    Ok(line.to_owned())
}

/// The password of the first matching line of a libpq passfile
/// (`host:port:database:user:password`, `*` matching anything, `\:` and `\\` escaped).
fn passfile_password(path: &Path, config: &tokio_postgres::Config) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        _ => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let wanted = [
        host.as_str(),
        port.as_str(),
        config.get_dbname().unwrap_or(""),
        config.get_user().unwrap_or(""),
    ];
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let fields = split_passfile_line(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want);
            matches.then(|| fields[4].clone())
        })
}

fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_fills_what_the_url_leaves_out_and_the_password_never_shows() {
        let env = PgEnvironment {
            host: Some("db.internal".into()),
            port: Some("6543".into()),
            user: Some("farm".into()),
            database: Some("engines".into()),
            password: Some("s3cret".into()),
            passfile: None,
        };
        let db = QueueDatabase::resolve("postgres://", None, None, &env).unwrap();
        assert_eq!(db.to_string(), "postgres://farm@db.internal:6543/engines");
        assert_eq!(db.config().get_password(), Some(&b"s3cret"[..]));
        assert!(!format!("{db:?}").contains("s3cret"));

        // A URL that names its host means that host's port (5432 unless given), as in libpq.
        let db =
            QueueDatabase::resolve("postgres://ci:pw@10.0.0.5/jobs", None, None, &env).unwrap();
        assert_eq!(db.to_string(), "postgres://ci@10.0.0.5:5432/jobs");
        assert_eq!(db.config().get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn a_password_file_and_a_passfile_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "from-file\n").unwrap();
        let env = PgEnvironment::default();
        let db = QueueDatabase::resolve("postgres://u@h/d", Some(&file), None, &env).unwrap();
        assert_eq!(db.config().get_password(), Some(&b"from-file"[..]));

        let passfile = dir.path().join("pgpass");
        std::fs::write(
            &passfile,
            "# comment\nother:5432:d:u:wrong\nh:*:d:u:p\\:w\\\\d\n",
        )
        .unwrap();
        let env = PgEnvironment {
            passfile: Some(passfile),
            ..PgEnvironment::default()
        };
        let db = QueueDatabase::resolve("postgres://u@h/d", None, None, &env).unwrap();
        assert_eq!(db.config().get_password(), Some(&b"p:w\\d"[..]));

        std::fs::write(&file, "\n").unwrap();
        let error =
            QueueDatabase::resolve("postgres://u@h/d", Some(&file), None, &env).unwrap_err();
        assert!(error.to_string().contains("is empty"), "{error}");
    }

    #[test]
    fn a_bad_url_says_what_is_expected() {
        let error = QueueDatabase::resolve(
            "postgres://h:notaport/d",
            None,
            None,
            &PgEnvironment::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("postgres://"), "{error}");
    }
}
