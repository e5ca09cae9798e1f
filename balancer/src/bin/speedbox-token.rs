//! `speedbox-token`: mints a bearer token (JWT, HS256) with the first key of `[auth] keys`
//! and prints it alone on stdout, so `TOKEN=$(speedbox-token --scope read)` works; with
//! `--link NAME`, signs a link instead and prints its path (`/files/NAME?sig=…`, or
//! `/s/…/files/PREFIX/` for a prefix ending in `/`). The secret is read from its key file,
//! never from arguments or the environment.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use speedbox_common::auth::link::{self, LinkRequest};
use speedbox_common::auth::{live, now_secs, token, Claims, Scopes};
use speedbox_common::config::ClusterConfig;

/// Mint a speedbox bearer token.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The cluster description whose `[auth] keys` sign the token.
    #[arg(long, default_value = "cluster.toml", env = "SPEEDBOX_CONFIG")]
    config: PathBuf,
    /// Who holds the token (its `sub`): owns the tus uploads it creates; revocable by it.
    #[arg(long, default_value = "cli")]
    sub: String,
    /// Scopes, comma- or space-separated: read, write, delete, admin.
    #[arg(long, default_value = "read")]
    scope: String,
    /// Names the token covers: those starting with this ("" = all).
    #[arg(long, default_value = "")]
    prefix: String,
    /// The largest upload the token may make, in bytes.
    #[arg(long)]
    max_bytes: Option<u64>,
    /// How long the token is valid: seconds, or a number with s, m, h or d (e.g. 15m, 1h).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    /// The token's id (`jti`), for revoking this one token; random if not given.
    #[arg(long)]
    jti: Option<String>,
    /// Sign a link to this file (or the files under this prefix, ending in `/`) instead.
    #[arg(long)]
    link: Option<String>,
    /// The link's method: GET (downloads, the default) or PUT (one upload).
    #[arg(long, default_value = "GET")]
    method: String,
    /// An upload link's pinned SHA-256 (64 hex digits): other bytes are not stored.
    #[arg(long)]
    sha256: Option<String>,
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: use a whole number with s, m, h or d (e.g. 15m)"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    if seconds == 0 {
        return Err("the ttl must be more than 0".into());
    }
    Ok(Duration::from_secs(seconds))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = ClusterConfig::load(&args.config)?;
    let auth = config
        .auth
        .as_ref()
        .filter(|a| a.enabled)
        .ok_or_else(|| anyhow!("{}: [auth] is not enabled", args.config.display()))?;
    let authenticator = live::build(&args.config, Some(auth))
        .map_err(|problems| anyhow!("{}: {}", args.config.display(), problems.join("; ")))?;
    let now = now_secs();
    if let Some(name) = args.link {
        let request = LinkRequest {
            method: args.method,
            name: name.clone(),
            ttl_secs: args.ttl.as_secs(),
            max_bytes: args.max_bytes,
            sha256: args.sha256,
            sub: args.sub,
        };
        let mut claims = request.claims(now).map_err(|e| anyhow!("--link: {e}"))?;
        if let Some(jti) = args.jti {
            claims.jti = Some(jti);
        }
        let sig = link::sign(authenticator.keys(), &claims).context("cannot sign")?;
        let (url, path_url) = link::urls(&name, &sig);
        println!("{}", if name.ends_with('/') { path_url } else { url });
        return Ok(());
    }
    let scopes = Scopes::parse(&args.scope).map_err(|e| anyhow!("--scope: {e}"))?;
    if scopes.is_empty() {
        bail!("--scope: name at least one of read, write, delete, admin");
    }
    let claims = Claims {
        sub: args.sub,
        exp: now + args.ttl.as_secs(),
        nbf: None,
        iat: Some(now),
        jti: Some(args.jti.unwrap_or_else(token::new_jti)),
        scope: scopes.to_string(),
        prefix: args.prefix,
        max_bytes: args.max_bytes,
    };
    let token = token::mint(authenticator.keys(), &claims).context("cannot mint")?;
    println!("{token}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90").unwrap().as_secs(), 90);
        assert_eq!(parse_ttl("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_ttl("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_ttl("2d").unwrap().as_secs(), 172_800);
        for bad in ["", "h", "1w", "-1h", "0", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
