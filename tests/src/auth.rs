//! Access control for the tests: a key, the `[auth]` section that names it, and tokens
//! minted with it the way `speedbox-token` mints them.

use speedbox_common::auth::{now_secs, token, Claims, Key, KeyRing};

/// The key `k1` of [`auth_toml`] clusters (written to `secrets/k1.key`).
pub const K1: &str = "k1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";

/// `[auth]` on, with keys `ids` at `secrets/<id>.key` (the first signs), and `anonymous`
/// scopes as TOML list items (e.g. `"\"read\""`, or `""` for none).
pub fn auth_toml(ids: &[&str], anonymous: &str) -> String {
    let keys: Vec<String> = ids
        .iter()
        .map(|id| format!("{{ id = \"{id}\", secret_file = \"secrets/{id}.key\" }}"))
        .collect();
    format!(
        "[auth]\nenabled = true\nkeys = [{}]\nanonymous = [{anonymous}]\n",
        keys.join(", ")
    )
}

/// A token's claims: `sub`, `scope`, `prefix`, valid for an hour from now.
pub fn claims(sub: &str, scope: &str, prefix: &str) -> Claims {
    let now = now_secs();
    Claims {
        sub: sub.into(),
        exp: now + 3600,
        nbf: None,
        iat: Some(now),
        jti: None,
        scope: scope.into(),
        prefix: prefix.into(),
        max_bytes: None,
    }
}

/// The ring of one key.
pub fn ring(key_id: &str, secret: &str) -> KeyRing {
    KeyRing::new(vec![Key::new(key_id, secret.as_bytes()).unwrap()])
}

/// `claims` signed with key `key_id` of secret `secret`.
pub fn mint_with(key_id: &str, secret: &str, claims: &Claims) -> String {
    token::mint(&ring(key_id, secret), claims).unwrap()
}

/// `claims` signed with [`K1`].
pub fn mint(claims: &Claims) -> String {
    mint_with("k1", K1, claims)
}

/// `Authorization: Bearer <token>`'s value.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
