//! The client assertion of a certificate credential (docs/graph.md §1, "Certificate JWT"): a JWT
//! signed with the certificate's key, posted as `client_assertion` instead of `client_secret`.
//!
//! RS256 with `x5t#S256`: Microsoft's page now shows PS256 with `x5t#S256` and an older revision
//! RS256 with `x5t` (SHA-1); Microsoft's own MSAL for Java sends RS256 with `x5t#S256`, which
//! Entra ID accepts.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

use crate::credentials::CertificateCredential;

/// `client_assertion_type` of a JWT client assertion (RFC 7523).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: Microsoft asks for 5 to 10 minutes after `nbf`.
const LIFETIME: time::Duration = time::Duration::minutes(10);

/// A new client assertion for `client_id`, for the token endpoint `audience` (the exact URL the
/// token request goes to), issued at `now`. Each call has a new `jti`, so build one per request.
pub(crate) fn client_assertion(
    certificate: &CertificateCredential,
    client_id: &str,
    audience: &str,
    now: OffsetDateTime,
) -> Result<String, ring::error::Unspecified> {
    let header = serde_json::json!({
        "alg": "RS256",
        "typ": "JWT",
        "x5t#S256": URL_SAFE_NO_PAD.encode(certificate.thumbprint_sha256()),
    });
    let issued = now.unix_timestamp();
    let claims = serde_json::json!({
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": issued,
        "iat": issued,
        "exp": (now + LIFETIME).unix_timestamp(),
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = certificate.sign_rs256(signing_input.as_bytes())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

#[cfg(test)]
mod tests {
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    use sha2::{Digest, Sha256};
    use time::macros::datetime;

    use super::*;

    const CERT: &str = include_str!("../../../sandbox/fixtures/app-cert.pem");
    const KEY: &str = include_str!("../../../sandbox/fixtures/app-key.pem");
    const AUDIENCE: &str =
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token";
    const NOW: OffsetDateTime = datetime!(2026-11-23 12:00:00 UTC);

    fn certificate() -> CertificateCredential {
        CertificateCredential::from_pem(CERT, KEY).unwrap()
    }

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// The public key of the fixture certificate, read independently of the code under test.
    fn public_key() -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(CERT.as_bytes()).unwrap();
        let certificate = pem.parse_x509().unwrap();
        certificate.public_key().subject_public_key.data.to_vec()
    }

    #[test]
    fn header_and_claims_are_as_entra_expects() {
        let jwt = client_assertion(&certificate(), "client-1", AUDIENCE, NOW).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");

        let (_, pem) = x509_parser::pem::parse_x509_pem(CERT.as_bytes()).unwrap();
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(&pem.contents));
        assert_eq!(
            decode(parts[0]),
            serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t#S256": thumbprint})
        );

        let claims = decode(parts[1]);
        let issued = NOW.unix_timestamp();
        assert_eq!(claims["aud"], AUDIENCE);
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["nbf"], issued);
        assert_eq!(claims["iat"], issued);
        assert_eq!(claims["exp"], issued + 600);
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(jti).unwrap().get_version_num(),
            4,
            "{jti}"
        );
        assert_eq!(claims.as_object().unwrap().len(), 7, "{claims}");
    }

    #[test]
    fn the_signature_verifies_with_the_certificates_public_key() {
        let jwt = client_assertion(&certificate(), "client-1", AUDIENCE, NOW).unwrap();
        let (signing_input, signature) = jwt.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let key = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key());
        key.verify(signing_input.as_bytes(), &signature).unwrap();

        // A changed claim no longer verifies.
        let other = client_assertion(&certificate(), "client-2", AUDIENCE, NOW).unwrap();
        let (other_input, _) = other.rsplit_once('.').unwrap();
        assert!(key.verify(other_input.as_bytes(), &signature).is_err());
    }

    #[test]
    fn every_assertion_has_its_own_jti() {
        let jti = || {
            let jwt = client_assertion(&certificate(), "c", AUDIENCE, NOW).unwrap();
            decode(jwt.split('.').nth(1).unwrap())["jti"].clone()
        };
        assert_ne!(jti(), jti());
    }
}
