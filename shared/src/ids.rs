//! Identifier newtypes: parsed once at the edge, trusted everywhere after.
//!
//! Every id is a short string of a restricted alphabet so it can be used safely as part of a storage key,
//! a log field or a URL path segment without escaping. Vendor-derived ids carry a vendor prefix
//! (`shopify:…`) so ids from two POS systems can never collide.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string was empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which id type.
        kind: &'static str,
    },
    /// The string was longer than allowed.
    #[error("{kind} is longer than {max} characters")]
    TooLong {
        /// Which id type.
        kind: &'static str,
        /// Maximum length.
        max: usize,
    },
    /// The string contained a character outside `[A-Za-z0-9._:/@-]`.
    #[error("{kind} contains a character outside [A-Za-z0-9._:/@-]")]
    BadCharacter {
        /// Which id type.
        kind: &'static str,
    },
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '@' | '-')
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Maximum length in characters.
            pub const MAX_LEN: usize = $max;

            /// Parses a string into this id, refusing empty, over-long or oddly-charactered input.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                if s.is_empty() {
                    return Err(IdError::Empty { kind: $kind });
                }
                if s.chars().count() > Self::MAX_LEN {
                    return Err(IdError::TooLong { kind: $kind, max: Self::MAX_LEN });
                }
                if !s.chars().all(is_id_char) {
                    return Err(IdError::BadCharacter { kind: $kind });
                }
                Ok(Self(s))
            }

            /// Builds an id from parts that are already valid ids (internal composition only).
            #[allow(dead_code)]
            pub(crate) fn from_valid_parts(s: String) -> Self {
                debug_assert!(Self::parse(s.clone()).is_ok(), "composed id is not valid");
                Self(s)
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A physical or virtual store (a POS location).
    StoreId,
    "store id",
    128
);
id_type!(
    /// A stock keeping unit, as the merchant's catalogue names it.
    Sku,
    "sku",
    128
);
id_type!(
    /// A completed sale (one receipt).
    SaleId,
    "sale id",
    128
);
id_type!(
    /// A return (refund) against a sale.
    ReturnId,
    "return id",
    128
);
id_type!(
    /// A loyalty member / customer.
    MemberId,
    "member id",
    128
);
id_type!(
    /// A stock adjustment reported by the POS or inventory system.
    AdjustmentId,
    "adjustment id",
    128
);
id_type!(
    /// A domain event published on the bus; consumers dedupe on it.
    EventId,
    "event id",
    200
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_vendor_prefixed_ids() {
        let id = SaleId::parse("shopify:order:450789469").expect("valid");
        assert_eq!(id.as_str(), "shopify:order:450789469");
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert_eq!(Sku::parse(""), Err(IdError::Empty { kind: "sku" }));
        assert!(matches!(
            Sku::parse("a".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
        assert!(matches!(
            Sku::parse("a b"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            Sku::parse("a#b"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            StoreId::parse("é"),
            Err(IdError::BadCharacter { .. })
        ));
    }

    #[test]
    fn serde_refuses_invalid_ids() {
        let err = serde_json::from_str::<StoreId>("\"bad id\"");
        assert!(err.is_err());
        let ok: StoreId = serde_json::from_str("\"store-1\"").expect("valid");
        assert_eq!(ok.to_string(), "store-1");
    }
}
