//! Customers and operators signed in through the stack's Cognito user pool, as the shop's app
//! would: the demo and the tests call the API with their ID tokens, and the emulator's HTTP API
//! authorizer checks them for real.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{anyhow, Context as _, Result};
use aws_sdk_cognitoidentityprovider::types::{AttributeType, AuthFlowType, MessageActionType};
use base64::Engine as _;
use serde_json::Value;

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

fn attribute(name: &str, value: &str) -> Result<AttributeType> {
    Ok(AttributeType::builder().name(name).value(value).build()?)
}

/// The claims of a JWT, read without checking it (the API's authorizer checks it).
pub fn claims(token: &str) -> Result<Value> {
    let payload = token.split('.').nth(1).ok_or_else(|| anyhow!("not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))?;
    Ok(serde_json::from_slice(&bytes)?)
}

impl Local {
    fn cognito(&self) -> aws_sdk_cognitoidentityprovider::Client {
        aws_sdk_cognitoidentityprovider::Client::new(&self.sdk)
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
        let (pool, client) = (self.output("UserPoolId"), self.output("UserPoolClientId"));
        let cognito = self.cognito();
        let mut attributes =
            vec![attribute("email", email)?, attribute("email_verified", "true")?, attribute("name", "Ada Lovelace")?];
        if let Some((phone, verified)) = phone {
            attributes.push(attribute("phone_number", phone)?);
            attributes.push(attribute("phone_number_verified", if verified { "true" } else { "false" })?);
        }
        let created = cognito
            .admin_create_user()
            .user_pool_id(pool)
            .username(email)
            .message_action(MessageActionType::Suppress)
            .set_user_attributes(Some(attributes.clone()))
            .send()
            .await;
        if let Err(e) = created {
            // Made by an earlier run or another test: give it this phone.
            if !format!("{e:?}").contains("UsernameExists") {
                return Err(anyhow!("AdminCreateUser {email}: {e:?}"));
            }
            cognito
                .admin_update_user_attributes()
                .user_pool_id(pool)
                .username(email)
                .set_user_attributes(Some(attributes))
                .send()
                .await
                .with_context(|| format!("AdminUpdateUserAttributes {email}"))?;
        }
        cognito
            .admin_set_user_password()
            .user_pool_id(pool)
            .username(email)
            .password(PASSWORD)
            .permanent(true)
            .send()
            .await
            .with_context(|| format!("AdminSetUserPassword {email}"))?;
        if operator {
            cognito
                .admin_add_user_to_group()
                .user_pool_id(pool)
                .username(email)
                .group_name("operators")
                .send()
                .await
                .context("AdminAddUserToGroup operators")?;
        }
        let auth = cognito
            .admin_initiate_auth()
            .user_pool_id(pool)
            .client_id(client)
            .auth_flow(AuthFlowType::AdminUserPasswordAuth)
            .auth_parameters("USERNAME", email)
            .auth_parameters("PASSWORD", PASSWORD)
            .send()
            .await
            .with_context(|| format!("AdminInitiateAuth {email}"))?;
        let token = auth
            .authentication_result()
            .and_then(|r| r.id_token())
            .ok_or_else(|| anyhow!("no ID token for {email}"))?
            .to_string();
        let subject = claims(&token)?["sub"].as_str().ok_or_else(|| anyhow!("no sub in the ID token"))?.to_string();
        let user = SignedIn { subject, email: email.to_string(), phone: phone.map(|(p, _)| p.to_string()), token };
        self.users.0.lock().expect("lock").insert(id, user.clone());
        Ok(user)
    }
}
