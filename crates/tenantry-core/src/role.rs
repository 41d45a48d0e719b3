//! Key roles (API.md §5), ordered by what they may do: reader < writer < admin < owner.

use crate::error::{Error, ErrorCode};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Reads files, memory, search and events.
    Reader,
    /// Also writes files and memory.
    Writer,
    /// Also manages keys and webhooks and reads the audit log.
    Admin,
    /// Everything an admin may, and cannot be revoked by an admin.
    Owner,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, Error> {
        match s {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            _ => Err(Error::new(
                ErrorCode::InvalidRequest,
                format!("unknown role {s:?}: use owner, admin, writer or reader"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power_and_round_trip() {
        assert!(Role::Reader < Role::Writer && Role::Writer < Role::Admin && Role::Admin < Role::Owner);
        for r in [Role::Reader, Role::Writer, Role::Admin, Role::Owner] {
            assert_eq!(Role::parse(r.as_str()).unwrap(), r);
        }
        assert_eq!(Role::parse("root").unwrap_err().code, ErrorCode::InvalidRequest);
    }
}
