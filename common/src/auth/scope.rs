//! Scopes: what a token lets its holder do (`read write delete admin`, space-separated in a
//! token's `scope` claim as RFC 8693 §4.2 and OAuth 2.0 write them).

use std::fmt;

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// GET and HEAD of files, listing.
    Read,
    /// PUT, `POST /upload`, tus creation and PATCH.
    Write,
    /// DELETE of files and tus uploads.
    Delete,
    /// Minting and revoking tokens, `/_cluster`, other principals' tus uploads.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Delete, Scope::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Delete => "delete",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Scope`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);
    pub const ALL: Scopes = Scopes(0b1111);

    /// Parses scope names separated by spaces or commas (`"read write"`, `"read,write"`).
    ///
    /// Errors: the first name that is not a scope, in a message listing the valid ones.
    pub fn parse(text: &str) -> Result<Scopes, String> {
        Self::from_names(text.split([' ', ',']).filter(|s| !s.is_empty()))
    }

    /// The set of the scopes named; errors as [`Scopes::parse`].
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, String> {
        let mut out = Scopes::NONE;
        for name in names {
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| {
                    format!("unknown scope {name:?}; use read, write, delete or admin")
                })?;
            out.0 |= scope.bit();
        }
        Ok(out)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every scope of `other` is in this set.
    pub fn covers(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }
}

impl fmt::Display for Scopes {
    /// Space-separated names, as the `scope` claim carries them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = Scope::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .map(Scope::name)
            .collect();
        f.write_str(&names.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        let s = Scopes::parse("write read").unwrap();
        assert!(s.contains(Scope::Read) && s.contains(Scope::Write));
        assert!(!s.contains(Scope::Delete) && !s.contains(Scope::Admin));
        assert_eq!(s.to_string(), "read write");
        assert_eq!(
            Scopes::parse("read,delete").unwrap().to_string(),
            "read delete"
        );
        assert_eq!(Scopes::parse("").unwrap(), Scopes::NONE);
        assert_eq!(
            Scopes::parse("read write delete admin").unwrap(),
            Scopes::ALL
        );
        assert!(Scopes::parse("read root").unwrap_err().contains("\"root\""));
        assert!(Scopes::ALL.covers(s) && !s.covers(Scopes::ALL));
    }
}
