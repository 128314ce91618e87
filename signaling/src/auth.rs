//! Client authentication (`auth = "none" | "token" | "jwt"`) for the Socket.IO handshake and
//! REST, and the admin token of `DELETE /api/rooms/{id}`.
//!
//! With auth on, the TURN user id is the token's subject: the JWT `sub`, or for static tokens
//! a stable short digest of the token (never the token itself).

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchboard_config::credentials::valid_user_id;
use switchboard_config::{Auth, CorsOrigins, SignalingConfig};

/// Clock skew allowed on `exp` and `nbf`, in seconds. jsonwebtoken's default is 60 s; a
/// few seconds cover NTP-synchronised hosts without stretching a token's life by a minute.
pub const JWT_LEEWAY_SECS: u64 = 5;

/// What a JWT must claim besides a valid signature, `exp`, `nbf` (when present) and `sub`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtRules {
    /// `signaling.jwt_audience`: when set, `aud` must contain it; when unset, `aud` is not
    /// checked (any or none).
    pub audience: Option<String>,
    /// `signaling.jwt_issuer`: when set, `iss` must equal it.
    pub issuer: Option<String>,
}

impl JwtRules {
    fn validation(&self) -> Validation {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = JWT_LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            // jsonwebtoken refuses any `aud` unless told which one to expect.
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }
}

/// Why a client was refused. Clients see only the stable message, never the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("invalid token")]
    Invalid,
}

/// Who the client is, as far as authentication says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The TURN user id fixed by the token; `None` when auth is off.
    pub user_id: Option<String>,
}

/// Longest part of a client's `username` kept as the prefix of a server-chosen user id.
pub const USER_ID_PREFIX_LEN: usize = 32;

/// A TURN user id chosen by the server (`auth = "none"`): random, 128 bits, so no client can
/// name, and so spend, another user's relay quota (the relay counts allocations per user
/// id). `prefix` (the client's `?username=`, already checked with `valid_user_id`) may only
/// prefix it, cut to [`USER_ID_PREFIX_LEN`] characters.
#[must_use]
pub fn server_chosen_user_id(prefix: Option<&str>) -> String {
    let random = uuid::Uuid::new_v4().simple();
    match prefix {
        Some(p) if !p.is_empty() => {
            let p: String = p.chars().take(USER_ID_PREFIX_LEN).collect();
            format!("{p}-{random}")
        }
        _ => format!("anon-{random}"),
    }
}

/// Checks client tokens against the configured mode.
pub struct Authenticator {
    mode: Mode,
    admin: Option<[u8; 32]>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(<redacted>)")
    }
}

enum Mode {
    None,
    /// SHA-256 digests of the accepted tokens (compared in constant time).
    Token(Vec<[u8; 32]>),
    Jwt(Box<(DecodingKey, Validation)>),
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

fn sha256(v: &str) -> [u8; 32] {
    Sha256::digest(v.as_bytes()).into()
}

/// The TURN user id of a static token: a domain-separated digest, 16 hex characters.
#[must_use]
pub fn token_subject(token: &str) -> String {
    let d = Sha256::digest(format!("switchboard-token-subject\0{token}").as_bytes());
    let mut out = String::from("tok-");
    for b in &d[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Authenticator {
    /// The authenticator of `[signaling]` (auth mode, admin token, JWT rules).
    #[must_use]
    pub fn from_config(sig: &SignalingConfig) -> Self {
        let rules = JwtRules {
            audience: sig.jwt_audience.clone(),
            issuer: sig.jwt_issuer.clone(),
        };
        Self::with_jwt_rules(&sig.auth, sig.admin_token.as_ref(), &rules)
    }

    /// Without JWT audience or issuer rules.
    #[must_use]
    pub fn new(auth: &Auth, admin_token: Option<&SecretString>) -> Self {
        Self::with_jwt_rules(auth, admin_token, &JwtRules::default())
    }

    #[must_use]
    pub fn with_jwt_rules(
        auth: &Auth,
        admin_token: Option<&SecretString>,
        rules: &JwtRules,
    ) -> Self {
        let mode = match auth {
            Auth::None => Mode::None,
            Auth::Token(list) => Mode::Token(
                list.iter()
                    .map(|t| sha256(t.expose_secret().trim()))
                    .collect(),
            ),
            Auth::Jwt(secret) => Mode::Jwt(Box::new((
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                rules.validation(),
            ))),
        };
        Self {
            mode,
            admin: admin_token.map(|t| sha256(t.expose_secret().trim())),
        }
    }

    /// Whether clients must present a token.
    #[must_use]
    pub fn required(&self) -> bool {
        !matches!(self.mode, Mode::None)
    }

    /// Checks a client token (handshake `auth.token` or REST bearer).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Subject, AuthError> {
        match &self.mode {
            Mode::None => Ok(Subject { user_id: None }),
            Mode::Token(digests) => {
                let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
                let given = sha256(token);
                // Try every token, so timing does not tell which one matched.
                let hit = digests
                    .iter()
                    .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&given));
                if bool::from(hit) {
                    Ok(Subject {
                        user_id: Some(token_subject(token)),
                    })
                } else {
                    Err(AuthError::Invalid)
                }
            }
            Mode::Jwt(jwt) => {
                let (key, validation) = &**jwt;
                let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
                let data = jsonwebtoken::decode::<Claims>(token, key, validation)
                    .map_err(|_| AuthError::Invalid)?;
                if !valid_user_id(&data.claims.sub) {
                    return Err(AuthError::Invalid);
                }
                Ok(Subject {
                    user_id: Some(data.claims.sub),
                })
            }
        }
    }

    /// `auth = "none"`: anyone may connect.
    #[must_use]
    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::None)
    }

    /// Checks the admin token. `None` when no admin token is configured (admin API off).
    #[must_use]
    pub fn check_admin(&self, token: Option<&str>) -> Option<bool> {
        let want = self.admin?;
        Some(token.is_some_and(|t| bool::from(sha256(t).ct_eq(&want))))
    }
}

/// Whether a Socket.IO handshake may come from `origin` (the browser's `Origin` header).
/// CORS does not cover WebSocket, so the handshake checks it too. Clients that send no
/// `Origin` (native apps, servers) are not browsers and are allowed.
#[must_use]
pub fn origin_allowed(allowed: &CorsOrigins, origin: Option<&str>) -> bool {
    match (allowed, origin) {
        (_, None) | (CorsOrigins::Any, _) => true,
        (CorsOrigins::List(list), Some(o)) => list.iter().any(|a| a == o),
    }
}

/// The token of an `Authorization: Bearer TOKEN` header value.
#[must_use]
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let v = header?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_string())
    }

    fn jwt(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap_or_default()
    }

    fn future() -> u64 {
        switchboard_config::unix_now() + 3600
    }

    #[test]
    fn with_auth_off_everyone_is_accepted_without_a_subject() {
        let a = Authenticator::new(&Auth::None, None);
        assert!(!a.required());
        assert_eq!(a.authenticate(None), Ok(Subject { user_id: None }));
    }

    #[test]
    fn static_tokens_accept_listed_tokens_with_a_digest_subject_and_refuse_others() {
        let a = Authenticator::new(&Auth::Token(vec![s("tok-one"), s("tok-two")]), None);
        let sub = a.authenticate(Some("tok-two")).expect("listed token");
        let id = sub.user_id.unwrap_or_default();
        assert!(id.starts_with("tok-") && id.len() == 20, "{id}");
        assert!(
            !id.contains("tok-two"),
            "the subject never contains the token"
        );
        assert_eq!(
            Some(id),
            a.authenticate(Some("tok-two")).ok().and_then(|s| s.user_id)
        );
        assert_eq!(a.authenticate(Some("tok-three")), Err(AuthError::Invalid));
        assert_eq!(a.authenticate(None), Err(AuthError::Missing));
        assert_eq!(a.authenticate(Some("")), Err(AuthError::Missing));
    }

    #[test]
    fn jwt_sub_becomes_the_user_id_and_bad_signature_expiry_or_sub_are_refused() {
        let a = Authenticator::new(&Auth::Jwt(s("jwt-secret")), None);
        let good = jwt("jwt-secret", json!({"sub": "alice", "exp": future()}));
        assert_eq!(
            a.authenticate(Some(&good)).map(|s| s.user_id),
            Ok(Some("alice".into()))
        );
        let forged = jwt("other-secret", json!({"sub": "alice", "exp": future()}));
        assert_eq!(a.authenticate(Some(&forged)), Err(AuthError::Invalid));
        let expired = jwt("jwt-secret", json!({"sub": "alice", "exp": 1_000}));
        assert_eq!(a.authenticate(Some(&expired)), Err(AuthError::Invalid));
        let no_sub = jwt("jwt-secret", json!({"exp": future()}));
        assert_eq!(a.authenticate(Some(&no_sub)), Err(AuthError::Invalid));
        let colon = jwt("jwt-secret", json!({"sub": "a:b", "exp": future()}));
        assert_eq!(a.authenticate(Some(&colon)), Err(AuthError::Invalid));
        assert_eq!(a.authenticate(Some("garbage")), Err(AuthError::Invalid));
    }

    #[test]
    fn jwt_nbf_in_the_future_is_refused_and_in_the_past_accepted() {
        let a = Authenticator::new(&Auth::Jwt(s("k")), None);
        let now = switchboard_config::unix_now();
        let early = jwt("k", json!({"sub": "al", "exp": future(), "nbf": now + 600}));
        assert_eq!(a.authenticate(Some(&early)), Err(AuthError::Invalid));
        let ok = jwt("k", json!({"sub": "al", "exp": future(), "nbf": now - 10}));
        assert!(a.authenticate(Some(&ok)).is_ok());
    }

    #[test]
    fn jwt_aud_is_ignored_when_unset_and_must_match_when_set() {
        let open = Authenticator::new(&Auth::Jwt(s("k")), None);
        let with_aud = jwt("k", json!({"sub": "al", "exp": future(), "aud": "app"}));
        assert!(
            open.authenticate(Some(&with_aud)).is_ok(),
            "any aud when unset"
        );
        let rules = JwtRules {
            audience: Some("app".into()),
            issuer: Some("https://idp.example".into()),
        };
        let strict = Authenticator::with_jwt_rules(&Auth::Jwt(s("k")), None, &rules);
        let good = jwt(
            "k",
            json!({"sub": "al", "exp": future(), "aud": ["other", "app"], "iss": "https://idp.example"}),
        );
        assert!(strict.authenticate(Some(&good)).is_ok());
        for bad in [
            json!({"sub": "al", "exp": future(), "aud": "other", "iss": "https://idp.example"}),
            json!({"sub": "al", "exp": future(), "iss": "https://idp.example"}),
            json!({"sub": "al", "exp": future(), "aud": "app", "iss": "https://evil.example"}),
            json!({"sub": "al", "exp": future(), "aud": "app"}),
        ] {
            let t = jwt("k", bad.clone());
            assert_eq!(
                strict.authenticate(Some(&t)),
                Err(AuthError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn server_chosen_user_ids_are_random_valid_and_only_prefixed_by_the_client() {
        let a = server_chosen_user_id(Some("alice"));
        let b = server_chosen_user_id(Some("alice"));
        assert_ne!(a, b);
        assert!(a.starts_with("alice-") && a != "alice", "{a}");
        let long = "x".repeat(128);
        let c = server_chosen_user_id(Some(&long));
        assert!(
            valid_user_id(&c) && c.len() == USER_ID_PREFIX_LEN + 33,
            "{c}"
        );
        assert!(server_chosen_user_id(None).starts_with("anon-"));
    }

    #[test]
    fn admin_checks_are_off_without_a_token_and_exact_with_one() {
        assert_eq!(
            Authenticator::new(&Auth::None, None).check_admin(Some("x")),
            None
        );
        let a = Authenticator::new(&Auth::None, Some(&s("admin-1")));
        assert_eq!(a.check_admin(Some("admin-1")), Some(true));
        assert_eq!(a.check_admin(Some("admin-2")), Some(false));
        assert_eq!(a.check_admin(None), Some(false));
    }

    #[test]
    fn handshakes_from_unlisted_browser_origins_are_refused() {
        let list = CorsOrigins::List(vec!["https://app.example.com".into()]);
        assert!(origin_allowed(&list, Some("https://app.example.com")));
        assert!(!origin_allowed(&list, Some("https://evil.example")));
        assert!(
            origin_allowed(&list, None),
            "non-browser clients send no Origin"
        );
        assert!(origin_allowed(
            &CorsOrigins::Any,
            Some("https://evil.example")
        ));
    }

    #[test]
    fn bearer_header_parsing_takes_the_token_after_the_scheme() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
