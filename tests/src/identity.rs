//! Customers and operators signed in through the stack's Cognito user pool, as the shop's app
//! would: the demo and the tests call the API with their ID tokens, and the emulator's HTTP API
//! authorizer checks them for real.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{anyhow, Context as _, Result};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::aws_api::COGNITO;
use crate::stack::Local;

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The user's subject (`sub`): the customer id of their orders.
    pub subject: String,
    /// Their verified email.
    pub email: String,
    /// Their verified phone, if any.
    pub phone: Option<String>,
    /// The ID token to send as `Authorization: Bearer`.
    pub token: String,
}

impl SignedIn {
    /// The `Authorization` header's value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// Who a user is: email, phone (and whether it is verified), whether an operator.
type UserKey = (String, Option<(String, bool)>, bool);

/// The users this process signed in, by email and phone, so each is made and signed in once.
#[derive(Default)]
pub struct Users(Mutex<HashMap<UserKey, SignedIn>>);

/// A password that meets the pool's policy; the users are the tests' own.
const PASSWORD: &str = "Orderflow-test-Passw0rd";

fn attribute(name: &str, value: &str) -> Value {
    json!({ "Name": name, "Value": value })
}

/// The claims of a JWT, read without checking it (the API's authorizer checks it).
pub fn claims(token: &str) -> Result<Value> {
    let payload = token.split('.').nth(1).ok_or_else(|| anyhow!("not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))?;
    Ok(serde_json::from_slice(&bytes)?)
}

impl Local {
    /// The ID token of `username` signed in with `password` through the app client `client`
    /// (`ADMIN_USER_PASSWORD_AUTH`, as the app's back end would).
    pub async fn sign_in(&self, client: &str, username: &str, password: &str) -> Result<String> {
        let auth = self
            .aws
            .json(
                COGNITO,
                "AdminInitiateAuth",
                &json!({ "UserPoolId": self.output("UserPoolId"), "ClientId": client,
                    "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
                    "AuthParameters": { "USERNAME": username, "PASSWORD": password } }),
            )
            .await
            .with_context(|| format!("AdminInitiateAuth {username}"))?;
        auth["AuthenticationResult"]["IdToken"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no ID token for {username}"))
    }

    /// A customer with this verified email (and phone), made in the user pool on first use and
    /// signed in with the app client.
    pub async fn customer(&self, email: &str, phone: Option<&str>) -> Result<SignedIn> {
        self.user(email, phone.map(|p| (p, true)), false).await
    }

    /// A customer whose phone the user pool has not verified (they typed it, never confirmed it).
    pub async fn customer_with_unverified_phone(&self, email: &str, phone: &str) -> Result<SignedIn> {
        self.user(email, Some((phone, false)), false).await
    }

    /// A member of the operators group.
    pub async fn operator(&self) -> Result<SignedIn> {
        self.user("operator@orderflow.example", None, true).await
    }

    async fn user(&self, email: &str, phone: Option<(&str, bool)>, operator: bool) -> Result<SignedIn> {
        let id = (email.to_string(), phone.map(|(p, v)| (p.to_string(), v)), operator);
        if let Some(user) = self.users.0.lock().expect("lock").get(&id) {
            return Ok(user.clone());
        }
        let pool = self.output("UserPoolId");
        let mut attributes =
            vec![attribute("email", email), attribute("email_verified", "true"), attribute("name", "Ada Lovelace")];
        if let Some((phone, verified)) = phone {
            attributes.push(attribute("phone_number", phone));
            attributes.push(attribute("phone_number_verified", if verified { "true" } else { "false" }));
        }
        let created = self
            .aws
            .json(
                COGNITO,
                "AdminCreateUser",
                &json!({ "UserPoolId": pool, "Username": email, "MessageAction": "SUPPRESS",
                    "UserAttributes": attributes }),
            )
            .await;
        if let Err(e) = created {
            // Made by an earlier run or another test: give it this phone.
            if e.code != "UsernameExistsException" {
                return Err(anyhow!("AdminCreateUser {email}: {e}"));
            }
            let update = json!({ "UserPoolId": pool, "Username": email, "UserAttributes": attributes });
            self.aws
                .json(COGNITO, "AdminUpdateUserAttributes", &update)
                .await
                .with_context(|| format!("AdminUpdateUserAttributes {email}"))?;
        }
        let password = json!({ "UserPoolId": pool, "Username": email, "Password": PASSWORD, "Permanent": true });
        self.aws
            .json(COGNITO, "AdminSetUserPassword", &password)
            .await
            .with_context(|| format!("AdminSetUserPassword {email}"))?;
        if operator {
            let group = json!({ "UserPoolId": pool, "Username": email, "GroupName": "operators" });
            self.aws.json(COGNITO, "AdminAddUserToGroup", &group).await.context("AdminAddUserToGroup operators")?;
        }
        let token = self.sign_in(self.output("UserPoolClientId"), email, PASSWORD).await?;
        let subject = claims(&token)?["sub"].as_str().ok_or_else(|| anyhow!("no sub in the ID token"))?.to_string();
        let user = SignedIn { subject, email: email.to_string(), phone: phone.map(|(p, _)| p.to_string()), token };
        self.users.0.lock().expect("lock").insert(id, user.clone());
        Ok(user)
    }
}
