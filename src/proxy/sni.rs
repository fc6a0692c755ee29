//! Reading the SNI of a TLS ClientHello without terminating TLS: the bytes are buffered, parsed
//! with `tls-parser`, and replayed to the upstream untouched.

use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_extensions,
    parse_tls_plaintext,
};

/// The largest ClientHello we buffer: one full TLS record plus its header.
pub const MAX_CLIENT_HELLO: usize = 5 + 16 * 1024;

/// What the bytes received so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// Not enough bytes yet; read more.
    Incomplete,
    /// A ClientHello, with its server name if it sent one.
    Complete { sni: Option<String> },
}

/// Why the bytes are not a ClientHello we can route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    #[error("not a TLS handshake record (first bytes are not a ClientHello)")]
    NotTls,
    #[error("ClientHello split over several records is not supported")]
    Fragmented,
    #[error("malformed ClientHello")]
    Malformed,
}

/// Parses the start of a TLS connection. Pure: fuzzed directly.
pub fn parse_client_hello(buf: &[u8]) -> Result<ClientHello, SniError> {
    // Record header: type 22 (handshake), version 3.x, then a 2-byte length.
    if let Some(&t) = buf.first()
        && t != 22
    {
        return Err(SniError::NotTls);
    }
    if buf.len() >= 2 && buf[1] != 3 {
        return Err(SniError::NotTls);
    }
    if buf.len() < 5 {
        return Ok(ClientHello::Incomplete);
    }
    let record_len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    if buf.len() < 5 + record_len {
        return Ok(ClientHello::Incomplete);
    }
    let record = &buf[..5 + record_len];
    let (_, plaintext) = parse_tls_plaintext(record).map_err(|e| match e {
        tls_parser::nom::Err::Incomplete(_) => SniError::Fragmented,
        _ => SniError::Malformed,
    })?;
    let hello = plaintext
        .msg
        .iter()
        .find_map(|m| match m {
            TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) => Some(ch),
            _ => None,
        })
        .ok_or(SniError::NotTls)?;
    let Some(ext) = hello.ext else {
        return Ok(ClientHello::Complete { sni: None });
    };
    let (_, extensions) = parse_tls_extensions(ext).map_err(|_| SniError::Malformed)?;
    let sni = extensions.iter().find_map(|e| match e {
        TlsExtension::SNI(names) => names
            .iter()
            .find(|(t, _)| *t == SNIType::HostName)
            .and_then(|(_, name)| std::str::from_utf8(name).ok())
            .map(str::to_owned),
        _ => None,
    });
    Ok(ClientHello::Complete { sni })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A real ClientHello from rustls, for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server_name = name.to_owned().try_into().unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_sni_from_a_real_client_hello() {
        let hello = client_hello("secure.example.com");
        assert_eq!(
            parse_client_hello(&hello),
            Ok(ClientHello::Complete {
                sni: Some("secure.example.com".into())
            })
        );
        for cut in [0, 1, 4, 5, hello.len() - 1] {
            assert_eq!(
                parse_client_hello(&hello[..cut]),
                Ok(ClientHello::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn rejects_plaintext() {
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            Err(SniError::NotTls)
        );
        assert_eq!(parse_client_hello(&[22, 1]), Err(SniError::NotTls));
        assert!(parse_client_hello(&[22, 3, 1, 0, 4, 1, 0, 0, 0]).is_err());
    }
}
