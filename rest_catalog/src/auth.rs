//! Bearer-token authentication: static tokens, and tokens this catalog signs
//! itself (HMAC-SHA256, with an expiry) for OAuth2 client-credentials clients.
//! Secrets are compared in constant time and never logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Prefix of the tokens this catalog signs, to tell them from static tokens.
const SIGNED_TOKEN_PREFIX: &str = "pglk1.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every request is accepted: only for a catalog reachable by trusted clients alone.
    None,
    /// Requests need `Authorization: Bearer <token>`.
    Token,
}

/// An OAuth2 client allowed to obtain tokens.
#[derive(Clone)]
pub struct OAuthClient {
    pub id: String,
    secret_digest: [u8; 32],
}

impl OAuthClient {
    pub fn new(id: String, secret: &str) -> Self {
        Self {
            id,
            secret_digest: digest(secret),
        }
    }
}

pub struct Auth {
    mode: AuthMode,
    static_token_digests: Vec<[u8; 32]>,
    clients: Vec<OAuthClient>,
    signing_key: Vec<u8>,
    token_ttl: Duration,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("mode", &self.mode)
            .field("static_tokens", &self.static_token_digests.len())
            .field(
                "clients",
                &self
                    .clients
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Successful answer of the token endpoint.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub issued_token_type: &'static str,
}

/// Errors of the token endpoint, in the OAuth2 shape (`error`, `error_description`).
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    InvalidRequest(&'static str),
    InvalidClient,
    UnsupportedGrantType,
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 7235 2.1, RFC 6750 2.1); one or more spaces follow it.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Auth {
    pub fn new(
        mode: AuthMode,
        static_tokens: &[String],
        clients: Vec<OAuthClient>,
        signing_key: Vec<u8>,
        token_ttl: Duration,
    ) -> Result<Self> {
        if mode == AuthMode::Token && static_tokens.is_empty() && clients.is_empty() {
            return Err(Error::Config(
                "--auth token needs static tokens (REST_CATALOG_TOKENS / --tokens-file) or OAuth clients \
                 (REST_CATALOG_OAUTH_CLIENTS / --oauth-clients-file)"
                    .into(),
            ));
        }
        if signing_key.len() < 32 {
            return Err(Error::Config(
                "the token signing key must be at least 32 bytes".into(),
            ));
        }
        Ok(Self {
            mode,
            static_token_digests: static_tokens.iter().map(|t| digest(t)).collect(),
            clients,
            signing_key,
            token_ttl,
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&self.signing_key).expect("HMAC takes any key length")
    }

    /// Checks an `Authorization` header value; returns the caller's name.
    pub fn authenticate(&self, header: Option<&str>) -> Result<String> {
        if self.mode == AuthMode::None {
            return Ok("anonymous".into());
        }
        let token = header
            .and_then(bearer_token)
            .ok_or_else(|| Error::NotAuthorized("missing bearer token".into()))?;
        if let Some(signed) = token.strip_prefix(SIGNED_TOKEN_PREFIX) {
            return self.verify_signed(signed);
        }
        let presented = digest(token);
        // Every digest is compared, so timing does not tell which one matched.
        let matched = self
            .static_token_digests
            .iter()
            .enumerate()
            .fold(None, |found, (i, d)| {
                found.or(bool::from(d.ct_eq(&presented)).then_some(i))
            });
        match matched {
            // Named by position, never by anything derived from the token.
            Some(i) => Ok(format!("static-token-{}", i + 1)),
            None => Err(Error::NotAuthorized("invalid bearer token".into())),
        }
    }

    fn verify_signed(&self, signed: &str) -> Result<String> {
        let invalid = || Error::NotAuthorized("invalid bearer token".into());
        let (payload, signature) = signed.split_once('.').ok_or_else(invalid)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).map_err(|_| invalid())?;
        let claims: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?)
                .map_err(|_| invalid())?;
        if claims.exp <= now() {
            return Err(Error::NotAuthorized(
                "bearer token expired; obtain a new one".into(),
            ));
        }
        Ok(claims.sub)
    }

    /// Signs a token for `subject` valid for `ttl` from now.
    pub fn sign(&self, subject: &str, ttl: Duration) -> String {
        let claims = Claims {
            sub: subject.to_string(),
            exp: now() + ttl.as_secs(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{SIGNED_TOKEN_PREFIX}{payload}.{signature}")
    }

    /// The OAuth2 client-credentials grant.
    pub fn issue(
        &self,
        grant_type: Option<&str>,
        client_id: Option<&str>,
        client_secret: Option<&str>,
    ) -> std::result::Result<TokenResponse, TokenError> {
        match grant_type {
            Some("client_credentials") => {}
            Some(_) => return Err(TokenError::UnsupportedGrantType),
            None => return Err(TokenError::InvalidRequest("grant_type is required")),
        }
        let (Some(id), Some(secret)) = (client_id, client_secret) else {
            return Err(TokenError::InvalidRequest(
                "client_id and client_secret are required",
            ));
        };
        let presented = digest(secret);
        // Check every client so timing does not reveal which ids exist.
        let matched = self.clients.iter().fold(false, |found, c| {
            found | (c.id == id && bool::from(c.secret_digest.ct_eq(&presented)))
        });
        if !matched {
            return Err(TokenError::InvalidClient);
        }
        Ok(TokenResponse {
            access_token: self.sign(id, self.token_ttl),
            token_type: "bearer",
            expires_in: self.token_ttl.as_secs(),
            issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            AuthMode::Token,
            &["static-secret".into()],
            vec![OAuthClient::new("spark".into(), "s3cret")],
            vec![7; 32],
            Duration::from_secs(60),
        )
        .unwrap()
    }

    #[test]
    fn static_and_issued_tokens_are_accepted() {
        let a = auth();
        assert!(a.authenticate(Some("Bearer static-secret")).is_ok());
        let t = a
            .issue(Some("client_credentials"), Some("spark"), Some("s3cret"))
            .unwrap();
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {}", t.access_token)))
                .unwrap(),
            "spark"
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let a = auth();
        for header in [
            "Bearer static-secret",
            "bearer static-secret",
            "BEARER static-secret",
            "bEaReR   static-secret",
        ] {
            assert!(a.authenticate(Some(header)).is_ok(), "{header}");
        }
        for header in [
            "Basic static-secret",
            "Bearer",
            "Bearer ",
            "Bearerstatic-secret",
        ] {
            assert!(a.authenticate(Some(header)).is_err(), "{header}");
        }
    }

    #[test]
    fn missing_wrong_tampered_and_expired_tokens_are_refused() {
        let a = auth();
        assert!(a.authenticate(None).is_err());
        assert!(a.authenticate(Some("Bearer nope")).is_err());
        let token = a.sign("spark", Duration::from_secs(60));
        let tampered = token.replacen("pglk1.e", "pglk1.f", 1);
        assert!(a.authenticate(Some(&format!("Bearer {tampered}"))).is_err());
        let expired = a.sign("spark", Duration::ZERO);
        let err = a
            .authenticate(Some(&format!("Bearer {expired}")))
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn bad_client_credentials_are_refused() {
        let a = auth();
        assert_eq!(
            a.issue(Some("client_credentials"), Some("spark"), Some("x"))
                .unwrap_err(),
            TokenError::InvalidClient
        );
        assert_eq!(
            a.issue(Some("password"), Some("spark"), Some("s3cret"))
                .unwrap_err(),
            TokenError::UnsupportedGrantType
        );
    }

    #[test]
    fn token_mode_needs_a_credential_source() {
        assert!(Auth::new(
            AuthMode::Token,
            &[],
            vec![],
            vec![0; 32],
            Duration::from_secs(1)
        )
        .is_err());
        assert!(Auth::new(
            AuthMode::None,
            &[],
            vec![],
            vec![0; 32],
            Duration::from_secs(1)
        )
        .is_ok());
    }
}
