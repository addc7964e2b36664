//! Identifier newtypes: parsed once at the edge, trusted everywhere after.
//!
//! Every id but [`Sku`] is a short string of a restricted alphabet so it can be used safely as part of a
//! storage key, a log field or a URL path segment without escaping. Vendor-derived ids carry a vendor
//! prefix (`shopify:…`) so ids from two POS systems can never collide.
//!
//! A [`Sku`] is the merchant's own free text ("TEE RED M", "Größe 42", "CAP#NAVY+1"): any printable
//! Unicode is accepted, and every key built from one keeps it last and whole (`SKU#{sku}`,
//! `{store}#{sku}` where store ids cannot contain `#`), so two SKUs never share a key.

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
    /// A free-text id (a SKU) contained a control character.
    #[error("{kind} contains a control character")]
    ControlCharacter {
        /// Which id type.
        kind: &'static str,
    },
    /// A free-text id (a SKU) started or ended with whitespace.
    #[error("{kind} starts or ends with whitespace")]
    SurroundingWhitespace {
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

/// A stock keeping unit, as the merchant's catalogue names it: free text, compared exactly.
///
/// Accepted: 1 to [`Sku::MAX_LEN`] Unicode scalar values, any printable character (spaces, `#`, `+`, `/`,
/// `%`, letters of any script, emoji). Refused: control characters (C0, DEL, C1: corrupt data, not a
/// label anyone can print or scan) and whitespace at either end (vendor adapters trim it first; no till
/// shows it, and keeping it would make "A" and "A " two products). No Unicode normalisation: a vendor's
/// SKU is an identifier and is kept as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    /// Maximum length in characters: with the `SKU#` prefix, 255 characters of up to 4 UTF-8 bytes
    /// each fill a DynamoDB sort key (1,024 bytes) exactly.
    pub const MAX_LEN: usize = 255;

    /// Parses a SKU (see the type's documentation for what is accepted).
    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(IdError::Empty { kind: "sku" });
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(IdError::TooLong {
                kind: "sku",
                max: Self::MAX_LEN,
            });
        }
        if s.chars().any(char::is_control) {
            return Err(IdError::ControlCharacter { kind: "sku" });
        }
        if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
            return Err(IdError::SurroundingWhitespace { kind: "sku" });
        }
        Ok(Self(s))
    }

    /// The SKU as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl From<Sku> for String {
    fn from(id: Sku) -> String {
        id.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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
            Sku::parse("a".repeat(256)),
            Err(IdError::TooLong { .. })
        ));
        assert!(matches!(
            StoreId::parse("a b"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            StoreId::parse("a#b"),
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

    #[test]
    fn skus_are_the_merchants_free_text() {
        for sku in [
            "TEE RED M",
            "Größe 42",
            "CAP#NAVY+1",
            "50% OFF/2",
            "?&=#",
            "商品-1",
            "🧢 cap",
            "A\u{a0}B",
        ] {
            assert_eq!(Sku::parse(sku).expect(sku).as_str(), sku);
        }
        let longest = "é".repeat(Sku::MAX_LEN);
        assert_eq!(Sku::parse(longest.clone()).expect("255").as_str(), longest);
        assert!(
            longest.len() + "SKU#".len() <= 1024,
            "fits a DynamoDB sort key"
        );
    }

    #[test]
    fn skus_refuse_control_characters_and_surrounding_whitespace() {
        for sku in ["A\tB", "A\nB", "A\u{0}B", "A\u{7f}B", "A\u{85}B"] {
            assert_eq!(
                Sku::parse(sku),
                Err(IdError::ControlCharacter { kind: "sku" }),
                "{sku:?}"
            );
        }
        for sku in [" A", "A ", "\u{3000}A", "A\u{a0}"] {
            assert_eq!(
                Sku::parse(sku),
                Err(IdError::SurroundingWhitespace { kind: "sku" }),
                "{sku:?}"
            );
        }
        assert!(serde_json::from_str::<Sku>("\"A\\u0000\"").is_err());
    }
}
