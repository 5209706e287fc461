//! Client assertions: certificate credentials at the token endpoint (docs/graph.md section 1).
//!
//! The assertion format is Entra's ("Microsoft identity platform application authentication
//! certificate credentials", entra-docs `docs/identity-platform/certificate-credentials.md`):
//! header `alg` PS256 (RS256 is still accepted; older revisions of that page and most libraries
//! use it), `typ` JWT, `x5t#S256` = base64url SHA-256 of the certificate's DER (or the legacy
//! `x5t`, base64url SHA-1); claims `aud` = the token URL including the tenant, `iss` = `sub` =
//! the client id, `jti`, `nbf`, `exp`.
//!
//! Where each AADSTS code comes from ("[doc]" a Microsoft page, "[obs]" real responses):
//! - 50027 `invalid_request`, malformed JWT: entra-docs `reference-error-codes.md`
//!   ("InvalidJwtToken"); the body recorded in MSAL.NET's tests
//!   (`tests/Microsoft.Identity.Test.Common/Core/Mocks/MockHelpers.cs`,
//!   `SendTenantIdInCredentialValueError50027`) [doc, obs]. A list-valued `aud` gets it too
//!   (panva/openid-client#348) [obs].
//! - 90014 `invalid_request`, a required claim missing: MockHelpers.cs `BadCredNoIssError90014`,
//!   `BadCredNoAudError90014` [obs].
//! - 5002738 `invalid_client`, unsupported `alg`: MockHelpers.cs `BadCredBadAlgError5002738` [obs].
//! - 5002723 `invalid_client`, no thumbprint header: MockHelpers.cs
//!   `BadCredMissingSha1Error5002723` [obs].
//! - 50048 `invalid_client`, `sub` differs from `iss`: `reference-error-codes.md`
//!   ("SubjectMismatchesIssuer") [doc].
//! - 700021 `invalid_client`, `iss`/`sub` is not the client id: Azure SDK for Java
//!   "Troubleshoot service principal authentication" (ClientAssertionCredential table) [doc];
//!   MockHelpers.cs `IdentifierMismatchError700021` [obs].
//! - 700023 `invalid_client`, wrong `aud`: the same Azure SDK for Java page [doc].
//! - 700024 `invalid_client`, outside `nbf`..`exp`: MockHelpers.cs `BadTimeRangeError700024`
//!   (the message text) [obs]; the reports behind docs/graph.md section 1 [obs].
//! - 700027 `invalid_client`, unknown thumbprint ("The key was not found."), expired key
//!   credential or certificate ("The key used is expired."), bad signature ("Client assertion
//!   failed signature validation."): `reference-error-codes.md` and the Java troubleshooting
//!   page [doc]; the bracketed reasons as quoted in public reports (MSAL.NET's ADAL migration
//!   guide, Azure Synapse Link troubleshooting) [obs].
//!
//! The status is 400 for `invalid_request` and 401 for `invalid_client`, as for secrets.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::auth::AadError;
use crate::credentials::AppCertificate;
use crate::state::AppState;

/// The only `client_assertion_type` Entra accepts (RFC 7523).
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Clock skew allowed on `nbf` and `exp`, in seconds.
const SKEW_SECONDS: i64 = 300;

const CERT_DOCS: &str = "Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .";

/// A parsed, not yet verified assertion.
pub(crate) struct Assertion<'a> {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    /// `base64url(header).base64url(claims)` exactly as sent: what the signature covers.
    signing_input: &'a str,
    signature: Vec<u8>,
}

fn invalid_request(code: u32, description: String) -> AadError {
    AadError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        code,
        description,
    )
}

fn invalid_client(code: u32, description: String) -> AadError {
    AadError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        code,
        description,
    )
}

fn malformed() -> AadError {
    invalid_request(50_027, "JWT token is invalid or malformed.".to_owned())
}

fn json_part(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

impl<'a> Assertion<'a> {
    /// Splits and decodes a compact JWS; anything else is AADSTS50027.
    pub(crate) fn parse(jwt: &'a str) -> Result<Self, AadError> {
        let jwt = jwt.trim();
        let (signing_input, signature) = jwt.rsplit_once('.').ok_or_else(malformed)?;
        let (header, claims) = signing_input.split_once('.').ok_or_else(malformed)?;
        if claims.contains('.') {
            return Err(malformed());
        }
        Ok(Self {
            header: json_part(header).ok_or_else(malformed)?,
            claims: json_part(claims).ok_or_else(malformed)?,
            signing_input,
            signature: URL_SAFE_NO_PAD
                .decode(signature.trim_end_matches('='))
                .map_err(|_| malformed())?,
        })
    }

    /// A string claim.
    pub(crate) fn claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    fn required(&self, name: &str) -> Result<&Value, AadError> {
        self.claims.get(name).filter(|v| !v.is_null()).ok_or_else(|| {
            invalid_request(
                90_014,
                format!(
                    "The required field '{name}' is missing from the credential. Ensure that you have all the necessary parameters for the login request."
                ),
            )
        })
    }

    fn required_str(&self, name: &str) -> Result<&str, AadError> {
        self.required(name)?.as_str().ok_or_else(malformed)
    }

    /// A NumericDate claim (seconds since the epoch; fractions allowed).
    fn time_claim(&self, name: &str) -> Result<Option<OffsetDateTime>, AadError> {
        match self.claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let seconds = v.as_f64().ok_or_else(malformed)?;
                let t = OffsetDateTime::from_unix_timestamp(seconds.floor() as i64)
                    .map_err(|_| malformed())?;
                Ok(Some(t))
            }
        }
    }

    /// Checks the assertion for `app` (whose id the request names) against the token URLs the
    /// client may have used, at `now`; every failure is the AADSTS error Entra gives.
    pub(crate) fn verify(
        &self,
        app: &AppState,
        audiences: &[String],
        now: OffsetDateTime,
    ) -> Result<(), AadError> {
        let alg = self.header.get("alg").and_then(Value::as_str).unwrap_or("");
        let algorithm: &'static dyn ring::signature::VerificationAlgorithm = match alg {
            "RS256" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            "PS256" => &ring::signature::RSA_PSS_2048_8192_SHA256,
            other => {
                return Err(invalid_client(
                    5_002_738,
                    format!(
                        "Invalid JWT token. '{other}' is not a supported signature algorithm. Supported signing algorithms are: 'RS256,PS256'"
                    ),
                ));
            }
        };
        let thumbprint = self.thumbprint()?;

        let iss = self.required_str("iss")?;
        let sub = self.required_str("sub")?;
        let aud = match self.required("aud")? {
            Value::String(s) => s.as_str(),
            // Entra refuses a list, even one holding its URL (panva/openid-client#348).
            _ => return Err(malformed()),
        };
        let exp = self.time_claim("exp")?.ok_or_else(|| {
            invalid_request(
                90_014,
                "The required field 'exp' is missing from the credential. Ensure that you have all the necessary parameters for the login request.".to_owned(),
            )
        })?;
        let nbf = self.time_claim("nbf")?;
        let jti = self.required_str("jti")?;
        if jti.is_empty() {
            return Err(malformed());
        }
        if iss != sub {
            return Err(invalid_client(
                50_048,
                "Subject mismatches Issuer claim in the client assertion.".to_owned(),
            ));
        }
        if !iss.eq_ignore_ascii_case(&app.client_id) {
            return Err(invalid_client(
                700_021,
                format!(
                    "Client assertion application identifier doesn't match 'client_id' parameter. {CERT_DOCS}"
                ),
            ));
        }
        if !audiences.iter().any(|a| a.eq_ignore_ascii_case(aud)) {
            return Err(invalid_client(
                700_023,
                format!(
                    "Client assertion audience claim does not match Realm issuer. Expected '{}', got '{aud}'. {CERT_DOCS}",
                    audiences.first().map_or("", String::as_str)
                ),
            ));
        }
        let skew = time::Duration::seconds(SKEW_SECONDS);
        let too_early = nbf.is_some_and(|nbf| now + skew < nbf);
        if too_early || exp + skew <= now {
            return Err(invalid_client(
                700_024,
                format!(
                    "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. {CERT_DOCS}",
                    entra_time(now),
                    entra_time(nbf.unwrap_or(OffsetDateTime::UNIX_EPOCH)),
                    entra_time(exp)
                ),
            ));
        }

        let hex_thumbprint = hex::encode_upper(thumbprint.bytes());
        let Some(key) = app.certificates.iter().find(|c| thumbprint.matches(c)) else {
            return Err(invalid_client(
                700_027,
                format!(
                    "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{hex_thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments to determine the corresponding service endpoint and https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http to build a query request URL, such as 'https://graph.microsoft.com/beta/applications/{}']",
                    app.client_id, app.object_id
                ),
            ));
        };
        if !key.is_valid_at(now) {
            return Err(invalid_client(
                700_027,
                format!(
                    "The certificate with identifier used to sign the client assertion is expired on application. [Reason - The key used is expired., Thumbprint of key used by client: '{hex_thumbprint}', Found key '{}']",
                    key.window()
                ),
            ));
        }
        ring::signature::UnparsedPublicKey::new(algorithm, &key.rsa_public_key)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| {
                invalid_client(
                    700_027,
                    format!(
                        "Client assertion failed signature validation. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '{hex_thumbprint}', Found key '{}']",
                        key.window()
                    ),
                )
            })
    }

    /// `x5t#S256` when present, else the legacy `x5t`.
    fn thumbprint(&self) -> Result<Thumbprint, AadError> {
        let decode = |name: &str| {
            self.header
                .get(name)
                .and_then(Value::as_str)
                .map(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok())
        };
        match (decode("x5t#S256"), decode("x5t")) {
            (Some(Some(b)), _) => Ok(Thumbprint::Sha256(b)),
            (Some(None), _) | (None, Some(None)) => Err(malformed()),
            (None, Some(Some(b))) => Ok(Thumbprint::Sha1(b)),
            (None, None) => Err(invalid_client(
                5_002_723,
                "Invalid JWT token. No certificate SHA-1 thumbprint, certificate SHA-256 thumbprint, nor keyId specified in token header.".to_owned(),
            )),
        }
    }
}

/// The certificate a client names in its assertion header.
enum Thumbprint {
    Sha256(Vec<u8>),
    Sha1(Vec<u8>),
}

impl Thumbprint {
    fn bytes(&self) -> &[u8] {
        match self {
            Thumbprint::Sha256(b) | Thumbprint::Sha1(b) => b,
        }
    }

    fn matches(&self, c: &AppCertificate) -> bool {
        match self {
            Thumbprint::Sha256(b) => *b == c.sha256,
            Thumbprint::Sha1(b) => *b == c.sha1,
        }
    }
}

/// Entra's time format in AADSTS700024: `2023-12-11T23:52:19.0000000Z`.
fn entra_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.0000000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
