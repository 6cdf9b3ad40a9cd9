//! Who is calling an HTTP API: the identity the API Gateway JWT authorizer verified.
//!
//! ```text
//! Authorization: Bearer <id token> ─► HTTP API JWT authorizer (issuer, audience, signature, expiry;
//!                                     anything wrong: 401, the function never runs)
//!                                  ─► requestContext.authorizer.jwt.claims ─► Caller::from_claims
//! ```
//!
//! The function trusts the claims because only the authorizer can put them there: there is no route
//! without it (the template's routes all name it) and no setting turns it off. A request that
//! reaches a function without claims (a direct invoke, a route wired without the authorizer) has no
//! caller, and the APIs answer 401.
//!
//! Contact details count only when the identity provider verified them (`email_verified`,
//! `phone_number_verified`): the suite texts and emails the caller's own verified contacts, never
//! ones a request names.

use std::collections::HashMap;

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequestContext;

/// The group whose members may use the operator routes.
pub const OPERATORS_GROUP: &str = "operators";

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The identity provider's stable subject (`sub`): who owns what this caller creates.
    pub subject: String,
    /// The caller's email address, if the provider verified it.
    pub email: Option<String>,
    /// The caller's phone number, if the provider verified it.
    pub phone: Option<String>,
    /// The caller's name, if the token carries one.
    pub name: Option<String>,
    /// The groups the caller is in (`cognito:groups`).
    pub groups: Vec<String>,
}

fn verified(claims: &HashMap<String, String>, value: &str, flag: &str) -> Option<String> {
    let flagged = claims.get(flag).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    // Taken as they are, never trimmed: a value with a line break is refused downstream, not mended.
    claims.get(value).cloned().filter(|v| flagged && !v.is_empty())
}

/// The groups claim, as API Gateway renders a list claim into its string map: `[a b]`, or a JSON
/// array `["a","b"]`, or a plain `a,b`.
fn groups(raw: &str) -> Vec<String> {
    let inner = raw.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|g| g.trim().trim_matches('"'))
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

impl Caller {
    /// The caller the claims name, or `None` without a subject.
    pub fn from_claims(claims: &HashMap<String, String>) -> Option<Caller> {
        let subject = claims.get("sub").map(|s| s.trim()).filter(|s| !s.is_empty())?.to_string();
        Some(Caller {
            subject,
            email: verified(claims, "email", "email_verified"),
            phone: verified(claims, "phone_number", "phone_number_verified"),
            name: claims.get("name").map(|n| n.trim().to_string()).filter(|n| !n.is_empty()),
            groups: claims.get("cognito:groups").map(|g| groups(g)).unwrap_or_default(),
        })
    }

    /// The caller of an HTTP API (payload 2.0) request, if its authorizer verified one.
    pub fn from_http_context(context: &ApiGatewayV2httpRequestContext) -> Option<Caller> {
        let claims = &context.authorizer.as_ref()?.jwt.as_ref()?.claims;
        Self::from_claims(claims)
    }

    /// The caller of an HTTP API request (the payload 2.0 request context), if its authorizer
    /// verified one.
    pub fn of_request(req: &lambda_http::Request) -> Option<Caller> {
        use lambda_http::RequestExt;
        match req.request_context_ref()? {
            lambda_http::request::RequestContext::ApiGatewayV2(context) => Self::from_http_context(context),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Whether the caller is an operator (in [`OPERATORS_GROUP`]).
    pub fn is_operator(&self) -> bool {
        self.groups.iter().any(|g| g == OPERATORS_GROUP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn contacts_count_only_when_verified() {
        let c = Caller::from_claims(&claims(&[
            ("sub", "u-1"),
            ("email", "ada@example.com"),
            ("email_verified", "true"),
            ("phone_number", "+447700900123"),
            ("phone_number_verified", "false"),
        ]))
        .unwrap();
        assert_eq!(c.email.as_deref(), Some("ada@example.com"));
        assert_eq!(c.phone, None, "an unverified phone is no phone");
        let c = Caller::from_claims(&claims(&[("sub", "u-1"), ("email", "ada@example.com")])).unwrap();
        assert_eq!(c.email, None, "no verification flag is not verified");
    }

    #[test]
    fn no_subject_is_no_caller() {
        assert_eq!(Caller::from_claims(&claims(&[("email", "a@b.co")])), None);
        assert_eq!(Caller::from_claims(&claims(&[("sub", " ")])), None);
    }

    #[test]
    fn groups_in_every_rendering_api_gateway_uses() {
        for raw in ["[operators]", "[admins operators]", r#"["admins","operators"]"#, "admins,operators"] {
            let c = Caller::from_claims(&claims(&[("sub", "u"), ("cognito:groups", raw)])).unwrap();
            assert!(c.is_operator(), "{raw}");
        }
        for raw in ["[operatorsx]", "[]", "admins"] {
            let c = Caller::from_claims(&claims(&[("sub", "u"), ("cognito:groups", raw)])).unwrap();
            assert!(!c.is_operator(), "{raw}");
        }
    }
}
