//! TLS on oxcart's outside connections: the CAs a client trusts, and telling a refused
//! certificate from a peer that is merely down.
//!
//! Every client oxcart makes over TLS (PostgreSQL, SMTP, calls between services, OTLP)
//! runs on rustls with the public (webpki) roots; a deployment with a private CA adds
//! its certificates from a PEM file. Kafka is the exception: librdkafka speaks TLS with
//! OpenSSL and takes its CA as a property (`ssl.ca.location`).
//!
//! At start-up each client makes one connection. A certificate that is refused (an
//! unknown issuer, a host name it does not name, an expired one) is a mistake in
//! configuration that no retry mends, so the process stops with one line naming the
//! connection and the cause; a peer that does not answer yet is only logged, since
//! peers start in any order. [`failure`] tells the two apart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// CA certificates trusted besides the public roots, from a PEM file.
#[derive(Debug, Clone, Default)]
pub struct TrustedCas {
    /// The file, and its certificates (PEM), when one is configured.
    file: Option<(PathBuf, Arc<[u8]>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read the CA file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {0} holds no PEM certificate")]
    Empty(PathBuf),
}

impl TrustedCas {
    /// The public roots alone.
    pub fn public() -> Self {
        Self::default()
    }

    /// The public roots and the certificates in `path` (PEM, one or more).
    pub fn from_file(path: &Path) -> Result<Self, CaError> {
        let pem = std::fs::read(path).map_err(|source| CaError::Read {
            path: path.to_owned(),
            source,
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
        if certificates.is_empty() {
            return Err(CaError::Empty(path.to_owned()));
        }
        Ok(Self {
            file: Some((path.to_owned(), pem.into())),
        })
    }

    /// [`from_file`](Self::from_file) when a file is given, else the public roots.
    pub fn from_optional(path: Option<&Path>) -> Result<Self, CaError> {
        path.map_or_else(|| Ok(Self::public()), Self::from_file)
    }

    /// The configured file's PEM, if any.
    pub fn pem(&self) -> Option<&[u8]> {
        self.file.as_ref().map(|(_, pem)| &pem[..])
    }

    /// The configured file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
    }

    /// The certificates for a reqwest client.
    pub fn for_reqwest(&self) -> Vec<reqwest::Certificate> {
        self.pem()
            .and_then(|pem| reqwest::Certificate::from_pem_bundle(pem).ok())
            .unwrap_or_default()
    }
}

/// Why a TLS handshake failed, when `error` (or anything in its chain) is one. It lives in
/// `oxcart-db`, whose PostgreSQL adapter needs it without the rest of this crate.
pub use oxcart_db::tls_failure as failure;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_certificate_is_found_anywhere_in_the_chain() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
        let wrapped = anyhow::Error::new(io).context("connecting to the catalog");
        let found = failure(wrapped.as_ref()).expect("a TLS failure");
        assert!(found.contains("UnknownIssuer"), "{found}");

        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(failure(&refused), None);
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let error = TrustedCas::from_file(&path).unwrap_err();
        assert!(
            error.to_string().contains("holds no PEM certificate"),
            "{error}"
        );
        let error = TrustedCas::from_file(&dir.path().join("missing.pem")).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot read the CA file"),
            "{error}"
        );
    }
}
